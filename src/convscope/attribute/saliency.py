"""One entry point for every gradient-based map, and the map's pictures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from convscope.attribute.averaged import integrated_gradients
from convscope.attribute.cam import (PERTURBATIONS, WEIGHTINGS, class_activation_map, default_layer, fused_cam,
                                     guided_grad_cam)
from convscope.attribute.core import attribute
from convscope.attribute.lrp import lrp
from convscope.attribute.noise import AGGREGATES, gradient_shap, noise_tunnel, smooth_grad
from convscope.attribute.rise import rise
from convscope.attribute.rollout import attention_rollout
from convscope.attribute.surrogate import kernel_shap, lime
from convscope.attribute.targets import class_indices, objective_for, task_of
from convscope.core.objectives import Objective
from convscope.core.legend import Panel, Scale, row
from convscope.core.render import Picture, colorize, overlay, picture
from convscope.errors import unknown_choice
from convscope.core.selfcheck import verdicts
from convscope.inspect.predictions import probabilities
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
        return class_activation_map(model, x, objective, layer, method=method, callback=callback)
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
        layer: the layer a CAM method read (None for the others).
    """

    method: str
    raw: torch.Tensor
    images: torch.Tensor
    objective: Objective
    notes: dict = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    layer: str | None = None

    @property
    def map(self) -> torch.Tensor:
        """``(B, H, W)`` float32: max over channels of the absolute attribution (Simonyan et al.)."""
        raw = self.raw.detach().float().cpu()
        return raw if raw.dim() == 3 else raw.abs().amax(dim=1)

    def picture(self, index: int = 0) -> Picture:
        """The image (the target marked, where it has marks) beside its map, each labelled, the map
        with its colour bar; the caption names the method, its layer, the target and its probability."""
        image = self.images[index].cpu()
        marked = self.objective.marks is not None
        shown = self.objective.marks(image, index) if marked else image
        view, scale, what = self._view(index)
        numbers = {name: float(values[index]) for name, values in self.notes.items()}
        caption = f"{self.method}{f' at {self.layer}' if self.layer else ''} of {self.objective.name}"
        if "probability" in numbers:
            caption += f", probability {numbers['probability']:.1%}"
        if "conservation" in numbers:
            caption += f"; relevance kept {numbers['conservation']:.0%} of the score"
        panels = [Panel(shown, "the image, the target marked" if marked else "the image"),
                  Panel(view, what + (f" at {self.layer}" if self.layer else ""), scale)]
        return picture(row(panels), caption, method=self.method, objective=self.objective.name,
                       layer=self.layer, low=scale.low, high=scale.high, **numbers)

    def _view(self, index: int) -> tuple[torch.Tensor, Scale, str]:
        """The map as pixels, its colour scale and what it shows."""
        base = self.method.split(" (")[0]
        if base in LRP_METHODS:  # signed: red for, blue against
            relevance = self.raw[index].detach().float().cpu().sum(0)
            top = float(relevance.abs().flatten().quantile(0.995).clamp_min(1e-12))
            return (colorize(relevance, cmap="bwr", vmin=-top, vmax=top),
                    Scale(-top, top, "bwr", "relevance: red for the target, blue against", clipped=True), self.method)
        if base in COLOR_METHODS:  # the signed gradient of each colour channel, gray where it is zero
            raw = self.raw[index].detach().float().cpu()
            top = float(raw.abs().flatten().quantile(0.995).clamp_min(1e-12))  # a few extreme pixels hide the rest
            return ((0.5 + 0.5 * raw / top).clamp(0, 1).expand(3, -1, -1),
                    Scale(-top, top, "gray", "gradient of each colour channel", clipped=True), self.method)
        heat = self.map[index]
        top = float(heat.flatten().quantile(0.99))
        view = overlay(self.images[index].cpu(), heat, alpha=0.6, vmin=0.0, vmax=top)
        return view, Scale(0.0, top, "inferno", "importance" if base in CAM_METHODS else "|gradient|, max over RGB"
                     if base == "gradient" else "|attribution|, max over RGB",
                     clipped=bool(heat.max() > top)), self.method

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
    cam_layer = (layer or default_layer(model, x, objective)) if method in CAM_METHODS else None
    notes = _class_probability(model, x, target)
    if noise is None and method in LRP_METHODS:
        result = lrp(model, x, objective, composite=LRP_METHODS[method])
        raw = result.relevance
        notes["conservation"] = result.conservation.cpu()
    elif noise is None:
        raw = METHODS[method](model, x, objective, cam_layer, callback=callback)
    else:
        raw = noise_tunnel(lambda copies: METHODS[method](model, copies, objective, cam_layer), x, kind=noise,
                           samples=samples, callback=callback)
    return Saliency(method if noise is None else f"{method} ({noise})", raw,
                    model.to_channels(x).expand(-1, 3, -1, -1).cpu(), objective, notes,
                    [str(verdict) for verdict in verdicts(model)], cam_layer)


def _class_probability(model: Model, x: torch.Tensor, target) -> dict[str, torch.Tensor]:
    """``{"probability": (B,)}`` of the explained class, when a classifier explains a class (the
    caption says how sure the model is of what is explained); else nothing."""
    if isinstance(target, Objective) or (isinstance(target, str) and ":" in target) or \
            task_of(model, x) not in ("classification", "multi-label"):
        return {}
    probs = probabilities(model, x)  # one forward pass for both the top class and its probability
    indices = probs.argmax(-1) if target is None else class_indices(model, x, target).cpu()
    return {"probability": probs.gather(1, indices.view(-1, 1))[:, 0]}
