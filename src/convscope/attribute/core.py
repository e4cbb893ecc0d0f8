"""The one attribution function: the gradient of an objective w.r.t. the input image."""

from __future__ import annotations

import torch
from torch import nn

from convscope.core.forward import read, score
from convscope.core.fastpath import fast_model, in_fast_layout
from convscope.core.hooks import frozen
from convscope.core.objectives import Objective
from convscope.core.rectifiers import apply_rule, check_rule
from convscope.models.model import Model, as_model


def attribute(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *,
              rule: str = "gradient") -> torch.Tensor:
    """Gradient of ``objective`` w.r.t. the pixels, for a batch, in one backward pass.

    The per-example scores are summed before differentiating, which gives each example's own
    gradient (the examples do not interact in eval mode). The forward stops at the deepest
    layer the objective reads; parameters get no gradient; the model is left as it was. Batch
    norms run folded into their convolutions (:mod:`convscope.core.folding`), and on CPU it runs
    channels-last (:mod:`convscope.core.layout`).

    Args:
        model: a Model or network.
        x: ``(B, C, H, W)`` images in [0, 1]; not modified.
        objective: what to explain, e.g. ``class_logit(281)`` or ``channel("_blocks.6", 3)``.
        rule: ``gradient`` (Simonyan et al. 2014), ``deconvnet`` (Zeiler & Fergus 2014) or
            ``guided`` (Springenberg et al. 2015): the backward rule at every rectifier.

    Returns:
        ``(B, C, H, W)`` gradient, same shape and device as ``x`` after moving to the model.
    """
    check_rule(rule)
    model = fast_model(as_model(model), objective.layers, x)

    def gradient(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().clone().requires_grad_(True)
        with frozen(model.net), torch.enable_grad():  # also inside a caller's no_grad
            total = score(model, x, objective).sum()
            apply_rule(total, rule)
            (grad,) = torch.autograd.grad(total, x)
        return grad.contiguous()
    return in_fast_layout(model, gradient, x.to(model.device))


def layer_gradient(model: Model | nn.Module, x: torch.Tensor, objective: Objective, layer: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's activations and the objective's gradient w.r.t. them (what CAM methods need).

    Backpropagation runs from the objective down to ``layer`` only: no parameter gradient is
    computed (the model is frozen) and nothing below the layer is differentiated. On CPU it
    runs channels-last (Grad-CAM on the default model: 1.11x faster), with batch norms folded.

    Returns:
        ``(acts, grad)``, both ``(B, C, h, w)``, detached.
    """
    model = fast_model(as_model(model), [*objective.layers, layer], x)

    def read_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with frozen(model.net), torch.enable_grad():
            acts = read(model, x, objective, leaves=[layer])
            (grad,) = torch.autograd.grad(objective(acts).sum(), acts[layer])
        return acts[layer].detach().contiguous(), grad.detach().contiguous()
    return in_fast_layout(model, read_gradient, x.detach().to(model.device))
