"""Randomization checks: a map that explains the model must depend on what the model learned.

* Model-parameter randomization (MPRT, Adebayo et al. 2018, arXiv:1810.03292), cascading: the
  layers are re-initialized from the top down, block by block, and after each block the map is
  compared (Spearman rank correlation) with the trained model's. Lower is better: an edge
  detector, which ignores the weights, stays at 1.
* Random logit (Sixt et al. 2020, arXiv:1912.09818): the map of the image's class compared with
  the map of another, random class. Lower is better: a map that does not change with the class
  does not explain the class.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from convscope.core.metrics import spearman
from convscope.core.objectives import Objective
from convscope.errors import ConvscopeError
from convscope.evaluate.scores import Target
from convscope.models.model import Model

#: ``(model, x (B, C, H, W), target) -> (B, H, W)`` maps: how a metric asks for a method's map; the
#: target is ``(B,)`` classes or a task's objective (:data:`~convscope.evaluate.scores.Target`).
Explainer = Callable[[Model, torch.Tensor, Target], torch.Tensor]


def parameterized_layers(net: nn.Module) -> list[str]:
    """Names of the modules that own parameters, in definition order (the input side first)."""
    return [name for name, module in net.named_modules() if any(True for _ in module.parameters(recurse=False))]


def randomized(model: Model, layers: list[str], *, seed: int = 0) -> Model:
    """A copy of ``model`` whose ``layers`` are re-initialized (``reset_parameters``, or a normal draw
    scaled like the weights for modules without one; batch norms also forget their statistics)."""
    net = copy.deepcopy(model.net)
    generator = torch.Generator().manual_seed(seed)
    modules = dict(net.named_modules())
    with torch.no_grad():
        for name in layers:
            module = modules[name]
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                for parameter in module.parameters(recurse=False):
                    parameter.normal_(0, float(parameter.std()) if parameter.numel() > 1 else 1.0)
    return dataclasses.replace(model, net=net, name=f"{model.name} (randomized)")


def cascading_randomization(model: Model, x: torch.Tensor, target: Target, explain: Explainer, *,
                            blocks: int | None = 5, seed: int = 0, copies: dict[tuple, Model] | None = None
                            ) -> tuple[torch.Tensor, list[str]]:
    """MPRT: the rank correlation of each image's map with the trained model's, after randomizing
    the top ``k`` blocks of parameterized layers for ``k = 1 .. blocks``.

    Args:
        blocks: how many groups the parameterized layers are split into (top first); None
            randomizes one layer more at each step (every layer: slow on deep networks).
        copies: randomized copies made so far, by ``(cut, seed)``, filled in here: methods ranked
            together share them (and each copy's fast-path self-check).

    Returns:
        ``(B, steps)`` correlations, and for each step the deepest layer it left trained ("" when
        every layer was randomized).
    """
    layers = parameterized_layers(model.net)[::-1]
    steps = len(layers) if blocks is None else min(blocks, len(layers))
    cuts = [round(len(layers) * (k + 1) / steps) for k in range(steps)]
    trained = explain(model, x, target).detach().cpu()
    similarities, kept = [], []
    for cut in cuts:
        copies = {} if copies is None else copies
        if (cut, seed) not in copies:
            copies[cut, seed] = randomized(model, layers[:cut], seed=seed)
        maps = explain(copies[cut, seed], x, target).detach().cpu()
        similarities.append(torch.tensor([spearman(a, b) for a, b in zip(trained, maps)]))
        kept.append(layers[cut] if cut < len(layers) else "")
    return torch.stack(similarities, 1), kept


def random_logit(model: Model, x: torch.Tensor, classes: torch.Tensor, explain: Explainer, *, classes_count: int,
                 seed: int = 0) -> torch.Tensor:
    """``(B,)`` rank correlation between the map of each image's class and of a random other class."""
    if isinstance(classes, Objective):
        raise ConvscopeError(f"random-logit compares the maps of two classes of a classifier; {classes.name} is "
                             "not a class: use mprt to check that the map depends on the model")
    generator = torch.Generator().manual_seed(seed)
    others = (classes.cpu() + torch.randint(1, classes_count, classes.shape, generator=generator)) % classes_count
    mine, theirs = explain(model, x, classes).detach().cpu(), explain(model, x, others).detach().cpu()
    return torch.tensor([spearman(a, b) for a, b in zip(mine, theirs)])
