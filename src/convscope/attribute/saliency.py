"""One entry point for every gradient-based map, and the map's pictures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from convscope.attribute.averaged import integrated_gradients
from convscope.attribute.cam import PERTURBATIONS, WEIGHTINGS, class_activation_map, fused_cam, guided_grad_cam
from convscope.attribute.core import attribute
from convscope.attribute.lrp import lrp
from convscope.attribute.noise import AGGREGATES, gradient_shap, noise_tunnel, smooth_grad
from convscope.attribute.rise import rise
from convscope.attribute.rollout import attention_rollout
from convscope.attribute.surrogate import kernel_shap, lime
from convscope.attribute.targets import objective_for
from convscope.core.objectives import Objective
from convscope.core.render import Picture, colorize, overlay, picture, side_by_side
from convscope.errors import unknown_choice
from convscope.core.selfcheck import verdicts
from convscope.models.model import Model, as_model


def _rule(rule: str) -> Callable:
    return lambda model, x, objective, layer, callback=None: attribute(model, x, objective, rule=rule)


def _lrp(composite: str) -> Callable:
    return lambda model, x, objective, layer, callback=None: lrp(model, x, objective, composite=composite).relevance


def _whole(method: Callable, *, reports: bool = False, **options) -> Callable:
    """A method of ``(model, x, objective, **options)``; ``reports``: it takes the progress callback."""
    def run(model, x, objective, layer, callback=None):
        return method(model, x, objective, **options, **({"callback": callback} if reports else {}))
    return run


def _cam(method: str) -> Callable:
    """A CAM method; ``layer`` may name several layers, comma-separated, whose maps are fused."""
    def run(model, x, objective, layer, callback=None):
        if layer is not None and "," in layer:
            return fused_cam(model, x, objective, [name.strip() for name in layer.split(",")], method=method)
        return class_activation_map(model, x, objective, layer, method=method)
    return run


#: LRP methods and their composites (:data:`~convscope.attribute.lrp.COMPOSITES`).
LRP_METHODS = {"lrp": "epsilon-gamma-box", "lrp-plus": "epsilon-plus-flat", "lrp-alpha-beta": "epsilon-alpha2-beta1"}
#: Method name -> ``(model, x, objective, layer, callback=None) -> (B, C, H, W) or (B, H, W)`` raw
#: attribution; methods with long loops call ``callback`` with the fraction done.
METHODS: dict[str, Callable] = {
    "gradient": _rule("gradient"),
    "deconvnet": _rule("deconvnet"),
    "guided": _rule("guided"),
    **{name: _cam(name) for name in [*WEIGHTINGS, *PERTURBATIONS]},
    "guided-gradcam": lambda model, x, objective, layer, callback=None: guided_grad_cam(model, x, objective, layer),
    "input-x-gradient": lambda model, x, objective, layer, callback=None: x * attribute(model, x, objective),
    **{kind: _whole(smooth_grad, reports=True, kind=kind) for kind in AGGREGATES},
    "gradient-shap": _whole(gradient_shap),
    "integrated-gradients": _whole(integrated_gradients, reports=True),
    **{name: _lrp(composite) for name, composite in LRP_METHODS.items()},
    "rise": _whole(rise, reports=True),
    "kernel-shap": _whole(kernel_shap),
    "lime": _whole(lime),
    "attention-rollout": lambda model, x, objective, layer, callback=None: attention_rollout(model, x),
}
#: Methods whose raw output is best seen as a colored image of the gradient itself.
COLOR_METHODS = ("deconvnet", "guided", "guided-gradcam")
CAM_METHODS = (*WEIGHTINGS, *PERTURBATIONS, "guided-gradcam")
#: Methods that read the objective on perturbed copies of the image, not its gradient.
PERTURBATION_METHODS = ("rise", "kernel-shap", "lime")
#: Methods for networks that compute attention (refused on the others).
TRANSFORMER_METHODS = ("attention-rollout",)


@dataclass
class Saliency:
    """An attribution map of a batch of images.

    Attributes:
        method: the method's name.
        raw: ``(B, C, H, W)`` for gradient methods, ``(B, H, W)`` for CAMs.
        images: ``(B, 3, H, W)`` the explained images.
        objective: what was explained.
        notes: numbers that go with the map (LRP: ``conservation``, input relevance over the score).
        checks: the fast paths' verdicts on this network so far, one line each: which stand-ins
            ran in place of it and how close to float64 they came (:mod:`convscope.core.selfcheck`).
    """

    method: str
    raw: torch.Tensor
    images: torch.Tensor
    objective: Objective
    notes: dict = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    @property
    def map(self) -> torch.Tensor:
        """``(B, H, W)`` float32: max over channels of the absolute attribution (Simonyan et al.)."""
        raw = self.raw.detach().float().cpu()
        return raw if raw.dim() == 3 else raw.abs().amax(dim=1)

    def picture(self, index: int = 0) -> Picture:
        """The image beside its map (a heat map, or the gradient itself in color)."""
        image = self.images[index].cpu()
        shown = image if self.objective.marks is None else self.objective.marks(image, index)
        caption = f"{self.method} of {self.objective.name}"
        if self.method.split(" (")[0] in LRP_METHODS:  # signed: red for, blue against
            relevance = self.raw[index].detach().float().cpu().sum(0)
            scale = float(relevance.abs().flatten().quantile(0.995).clamp_min(1e-12))
            view = colorize(relevance, cmap="bwr", vmin=-scale, vmax=scale)
            if "conservation" in self.notes:
                caption += f"; relevance kept {float(self.notes['conservation'][index]):.0%} of the score"
        elif self.method.split(" (")[0] in COLOR_METHODS:
            raw = self.raw[index].detach().float().cpu()
            scale = raw.abs().flatten().quantile(0.995).clamp_min(1e-12)  # a few extreme pixels would hide the rest
            view = (0.5 + 0.5 * raw / scale).clamp(0, 1).expand(3, -1, -1)
        else:
            heat = self.map[index]
            view = overlay(image, heat, alpha=0.6, vmin=0.0, vmax=float(heat.flatten().quantile(0.99)))
        numbers = {name: float(values[index]) for name, values in self.notes.items()}
        return picture(side_by_side([shown, view]), caption, method=self.method, objective=self.objective.name,
                       **numbers)

    def _repr_png_(self) -> bytes:
        return self.picture()._repr_png_()


def saliency(model: Model | nn.Module, x: torch.Tensor, target: int | str | torch.Tensor | Objective | None = None,
             *, method: str = "gradient", layer: str | None = None, channel: int | None = None,
             position: tuple[int, int] | None = None, noise: str | None = None, samples: int = 25,
             callback: Callable[[float], None] | None = None) -> Saliency:
    """Explains ``target`` for each image with a gradient method.

    Args:
        model: a Model or network.
        x: ``(B, C, H, W)`` images in [0, 1].
        target: class index or name (top class if None), a ``(B,)`` tensor, or an Objective.
        method: one of :data:`METHODS`.
        layer: the CAM layer for Grad-CAM methods (default: the last spatial one; several,
            comma-separated, are fused: :func:`~convscope.attribute.cam.fused_cam`); for the other
            methods, the layer of ``channel``.
        channel, position: explain this channel of ``layer`` (or one unit at ``(y, x)``) instead
            of a class.
        noise: a noise tunnel around the method (:data:`~convscope.attribute.noise.AGGREGATES`:
            ``smoothgrad``, ``smoothgrad-sq``, ``vargrad``), over ``samples`` noisy copies.
        callback: called with the fraction done by the methods that loop (Integrated Gradients,
            the noise tunnel, SmoothGrad and its kin, RISE).

    Returns:
        :class:`Saliency` with ``.map`` ``(B, H, W)`` and ``.picture()``.
    """
    if method not in METHODS:
        raise unknown_choice("method", method, METHODS)
    model = as_model(model)
    x = x.to(model.device)
    unit_layer = None if method in CAM_METHODS else layer
    objective = objective_for(model, x, target, layer=unit_layer, channel_index=channel, position=position,
                              perturbation=method in PERTURBATION_METHODS)
    cam_layer, notes = layer if method in CAM_METHODS else None, {}
    if noise is None and method in LRP_METHODS:
        result = lrp(model, x, objective, composite=LRP_METHODS[method])
        raw, notes = result.relevance, {"conservation": result.conservation.cpu()}
    elif noise is None:
        raw = METHODS[method](model, x, objective, cam_layer, callback=callback)
    else:
        raw = noise_tunnel(lambda copies: METHODS[method](model, copies, objective, cam_layer), x, kind=noise,
                           samples=samples, callback=callback)
    return Saliency(method if noise is None else f"{method} ({noise})", raw,
                    model.to_channels(x).expand(-1, 3, -1, -1).cpu(), objective, notes,
                    [str(verdict) for verdict in verdicts(model)])
