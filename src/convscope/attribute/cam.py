"""Class activation maps: a layer's maps, weighted and summed. The gradient weightings (Grad-CAM,
Grad-CAM++, HiResCAM, XGrad-CAM, Layer-CAM, Eigen-Grad-CAM) and Eigen-CAM are a few lines each on one
backward pass to the layer; Score-CAM and Ablation-CAM weigh channels by batched forwards of changed
copies. Guided Grad-CAM multiplies Grad-CAM with guided backpropagation."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribute.core import attribute, layer_gradient
from convscope.core.forward import copy_scorer, read, score
from convscope.core.hooks import frozen, replaced
from convscope.core.maps import reading_of
from convscope.core.objectives import Objective
from convscope.core.summary import feature_maps
from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.detectors import in_body, is_detector
from convscope.models.model import Model, as_model

#: Each network's default CAM layer, by image size and what the objective reads (not for detectors).
_DEEPEST: weakref.WeakKeyDictionary[nn.Module, dict[tuple, str]] = weakref.WeakKeyDictionary()


def grad_cam(model: Model | nn.Module, x: torch.Tensor, objective: Objective, layer: str | None = None, *,
             plus_plus: bool = False) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391) or Grad-CAM++ (Chattopadhay et al. 2018).

    Each channel of ``layer`` is weighted by its spatially averaged gradient (Grad-CAM) or by
    positive gradients weighted with the closed-form alphas (Grad-CAM++); the weighted sum is
    rectified and upsampled to the input. See :func:`class_activation_map` for the other weightings.

    Args:
        layer: a layer whose output reads as maps (:mod:`convscope.core.maps`: convolutional,
            channels-last or tokens); :func:`default_layer` when omitted.

    Returns:
        ``(B, H, W)`` non-negative map at input resolution.
    """
    return class_activation_map(model, x, objective, layer, method="gradcam++" if plus_plus else "gradcam")


def class_activation_map(model: Model | nn.Module, x: torch.Tensor, objective: Objective, layer: str | None = None,
                         *, method: str = "gradcam", callback: Callable[[float], None] | None = None) -> torch.Tensor:
    """A class activation map: ``layer``'s maps combined by one of :data:`WEIGHTINGS` (from the
    activations and the objective's gradient w.r.t. them, one backward pass from the objective to
    the layer) or :data:`PERTURBATIONS` (from batched forwards of changed copies), rectified and
    upsampled to the input.

    ``callback`` receives the fraction of the copies scored, for the perturbation methods.

    Returns:
        ``(B, H, W)`` non-negative map at input resolution.
    """
    if method not in WEIGHTINGS and method not in PERTURBATIONS:
        raise unknown_choice("CAM method", method, [*WEIGHTINGS, *PERTURBATIONS])
    model = as_model(model)
    layer = layer or default_layer(model, x, objective)
    acts, grad = layer_gradient(model, x, objective, layer)
    reading = reading_of(acts.shape, tuple(x.shape[-2:]))  # the aspect ratio decides: any resize keeps it
    if reading is None:
        raise ConvscopeError(f"CAM methods need a layer whose output reads as (C, h, w) maps; {layer!r} gives "
                             f"{tuple(acts.shape[1:])}; the default is {last_spatial_layer(model)!r}")
    maps, grads = reading.maps(acts), reading.maps(grad)
    if method in WEIGHTINGS:
        cam = WEIGHTINGS[method](maps, grads)
    else:
        weights = PERTURBATIONS[method](model, x.to(model.device), objective, layer, reading, maps, callback)
        cam = (weights[:, :, None, None] * maps).sum(1)
    return F.interpolate(torch.relu(cam)[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def fused_cam(model: Model | nn.Module, x: torch.Tensor, objective: Objective, layers: Sequence[str], *,
              method: str = "gradcam") -> torch.Tensor:
    """Several layers' class activation maps combined: each scaled to [0, 1] per image, then
    averaged (as pytorch-grad-cam combines its target layers), so that a coarse deep map and a
    finer earlier one both show.

    Returns:
        ``(B, H, W)`` in [0, 1] at input resolution.
    """
    scaled = []
    for layer in layers:
        cam = class_activation_map(model, x, objective, layer, method=method)
        low, high = cam.amin(dim=(1, 2), keepdim=True), cam.amax(dim=(1, 2), keepdim=True)
        scaled.append((cam - low) / (high - low).clamp_min(1e-12))
    return torch.stack(scaled).mean(0)


def _plus_plus(acts: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++: positive gradients weighted by the closed-form alphas (eq. 19 of the paper, with the
    exponential of the score)."""
    g2, g3 = grad.pow(2), grad.pow(3)
    denominator = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(grad != 0, g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator)),
                        torch.zeros_like(grad))
    return _weighted(acts, (alpha * torch.relu(grad)).sum(dim=(2, 3)))


def _weighted(acts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(B, h, w)``: the channels of ``acts`` ``(B, C, h, w)`` summed with ``weights`` ``(B, C)``."""
    return (weights[:, :, None, None] * acts).sum(1)


def principal_map(values: torch.Tensor) -> torch.Tensor:
    """``(B, h, w)``: each image's positions ``(h*w, C)``, centred, projected on their first principal
    direction (Eigen-CAM). An SVD leaves the direction's sign arbitrary (the reference implementation
    keeps whatever it returns, so its maps are often inverted); it is chosen so that the map
    correlates positively with the positions' summed values."""
    batch, channels = values.shape[:2]
    rows = values.flatten(2).transpose(1, 2).double()
    centred = rows - rows.mean(1, keepdim=True)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[:, 0]              # (B, C)
    projection = (centred @ direction[:, :, None])[..., 0]                           # (B, h*w)
    total = rows.sum(2)
    sign = torch.sign(((projection - projection.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True)))
                      .sum(1, keepdim=True))
    return (projection * torch.where(sign == 0, torch.ones_like(sign), sign)).view(batch, *values.shape[2:]).to(values)


#: Map from activations ``(B, C, h, w)`` and gradients (same shape) to ``(B, h, w)``, before the ReLU.
WEIGHTINGS = {
    "gradcam": lambda acts, grad: _weighted(acts, grad.mean(dim=(2, 3))),
    "gradcam++": _plus_plus,
    "hirescam": lambda acts, grad: (grad * acts).sum(1),                       # Draelos & Carin 2020
    "xgradcam": lambda acts, grad: _weighted(acts, (grad * acts).sum(dim=(2, 3))  # Fu et al. 2020
                                             / (acts.sum(dim=(2, 3)) + 1e-7)),
    "layercam": lambda acts, grad: (torch.relu(grad) * acts).sum(1),           # Jiang et al. 2021
    "eigencam": lambda acts, grad: principal_map(acts),                         # Muhammad & Yeasin 2020
    "eigengradcam": lambda acts, grad: principal_map(grad * acts),
}


def _score_weights(model: Model, x: torch.Tensor, objective: Objective, layer: str, reading, maps: torch.Tensor,
                   callback: Callable[[float], None] | None = None) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020): each channel's map, upsampled and scaled to [0, 1], masks the
    image; the softmax over channels of the objective on the masked copies is the channel's weight.

    A channel whose map is constant (a dead unit, common after a ReLU) masks out the whole image:
    all such channels share one masked copy, scored once (on a trained EfficientNet-Lite0's last
    layer, 64% of the channels for the cat photo)."""
    masks = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=True)
    low, high = masks.amin(dim=(2, 3), keepdim=True), masks.amax(dim=(2, 3), keepdim=True)
    masks = (masks - low) / (high - low + 1e-8)
    constant = ((high - low) <= 0).view(len(x), -1).all(0)  # (C,): blank masks in every image
    scored = torch.cat([(~constant).nonzero()[:, 0], constant.nonzero()[:1, 0]])  # one blank stands for all
    scores = _chunked_scores(model, objective, len(scored),
                             lambda chunk: (x[:, None] * masks[:, scored[chunk], None]).flatten(0, 1), callback)
    every = scores.new_empty(len(x), maps.shape[1])
    every[:, scored] = scores
    every[:, constant] = scores[:, -1:]
    return every.softmax(-1)


def _ablation_weights(model: Model, x: torch.Tensor, objective: Objective, layer: str, reading, maps: torch.Tensor,
                      callback: Callable[[float], None] | None = None) -> torch.Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020): each channel's weight is the relative drop of the objective
    when that channel of the layer is set to zero.

    Each image goes through the network once per chunk of channels, and the batch grows at the layer:
    only the part after it runs on the ablated copies (on a CNN's last feature map, its head). Where
    the part after the layer reads tensors from before it that do not broadcast over the copies
    (a dense block's concatenation), the result of the first chunk differs from ablating whole
    copies, and every chunk runs on whole copies instead."""
    with frozen(model.net), torch.no_grad():
        base = score(model, x, objective)
    rows = []
    for i in range(len(x)):
        image, own = x[i:i + 1], objective.example(i)
        first = torch.arange(min(maps.shape[1], CHUNK))
        growing = _grown_drops(model, image, own, layer, reading, first)
        whole = _ablated_scores(model, image.repeat_interleave(len(first), 0), own, layer, reading, first)
        fast = growing is not None and torch.allclose(growing, whole, rtol=1e-4, atol=1e-5 * float(whole.abs().max()))
        drops = [whole]
        rest = torch.arange(len(first), maps.shape[1])
        for channels in rest.split(GROWN_CHUNK if fast else CHUNK) if len(rest) else ():  # split([]) gives ([],)
            drops.append(_grown_drops(model, image, own, layer, reading, channels) if fast else
                         _ablated_scores(model, image.repeat_interleave(len(channels), 0), own, layer, reading,
                                         channels))
            if callback:
                callback((i + (int(channels[-1]) + 1) / maps.shape[1]) / len(x))
        rows.append(torch.cat(drops))
    return (base[:, None] - torch.stack(rows)) / base[:, None]


def _ablated_scores(model: Model, copies: torch.Tensor, objective: Objective, layer: str, reading,
                    channels: torch.Tensor) -> torch.Tensor:
    """``(len(channels),)`` the objective with channel ``channels[j]`` of the layer zeroed in copy ``j``
    of the image; ``copies`` is one image, or one image repeated for each channel."""
    def ablate(output: torch.Tensor) -> torch.Tensor:
        rows = output.expand(len(channels), *output.shape[1:]).clone()
        if reading.kind == "tokens":  # channels are the last dimension of the grid's tokens
            rows[torch.arange(len(channels)), reading.prefix:, channels] = 0
        else:
            reading.maps(rows)[torch.arange(len(channels)), channels] = 0
        return rows
    with frozen(model.net), torch.no_grad(), replaced(model.net, layer, ablate):
        return score(model, copies, objective)


def _grown_drops(model: Model, image: torch.Tensor, objective: Objective, layer: str, reading,
                 channels: torch.Tensor) -> torch.Tensor | None:
    """:func:`_ablated_scores` of one image whose batch grows at the layer; None where the network
    refuses the grown batch."""
    try:
        return _ablated_scores(model, image, objective, layer, reading, channels)
    except RuntimeError:  # a tensor from before the layer does not broadcast over the copies
        return None


def _chunked_scores(model: Model, objective: Objective, channels: int, copies,
                    callback: Callable[[float], None] | None = None) -> torch.Tensor:
    """``(B, channels)`` objective values of ``copies(chunk)`` (image-major ``(B * len(chunk), ...)``),
    scored on the fast path that proved itself for such copies; ``callback`` gets the fraction done."""
    pixels = copies(torch.arange(1))[0, 0].numel()
    chunks = torch.arange(channels).split(max(1, CHUNK * 224 * 224 // pixels))  # as many pixels as 4 at 224
    scores = []
    with copy_scorer(model, objective, copies(chunks[0])) as scored:
        for chunk in chunks:
            scores.append(scored(copies(chunk)).view(-1, len(chunk)))
            if callback:
                callback(int(chunk[-1] + 1) / channels)
    return torch.cat(scores, 1)


#: Copies per forward pass in the perturbation CAMs: 4 is fastest on a 2-core CPU for the default model
#: (Score-CAM 23 s at 4, 71 s at 32), and Score-CAM takes as many pixels per pass at other sizes
#: (48 copies at 64 px: ResNet-50's 2048 channels in 23 s instead of 41); Ablation-CAM's copies that
#: only run after the layer go 256 at a time.
CHUNK, GROWN_CHUNK = 4, 256
#: Channel weights ``(B, C)`` from forwards of changed copies: ``(model, x, objective, layer, reading, maps)``.
PERTURBATIONS = {"scorecam": _score_weights, "ablationcam": _ablation_weights}


def guided_grad_cam(model: Model | nn.Module, x: torch.Tensor, objective: Objective,
                    layer: str | None = None) -> torch.Tensor:
    """Guided backprop times the Grad-CAM map (Selvaraju et al. 2017): ``(B, C, H, W)``."""
    cam = grad_cam(model, x, objective, layer)
    return attribute(model, x, objective, rule="guided") * cam[:, None]


def default_layer(model: Model, x: torch.Tensor, objective: Objective) -> str:
    """The deepest feature map that ``objective`` reads for the first image (found in one backward
    pass): :func:`last_spatial_layer` on a CNN; on a transformer that reads its class token, the
    last map whose patch tokens still reach it (a final per-token norm's never do); on a detector,
    the deepest backbone map the box reads (a box predicted from a fine level of the feature pyramid
    does not depend on the coarser levels after it). Found once per network and image size, except
    on a detector, where it depends on the box."""
    if is_detector(model.net):
        return _deepest_read(model, x, objective, [m.name for m in feature_maps(model) if in_body(model.net, m.name)])
    known = _DEEPEST.setdefault(model.net, {})
    key = (tuple(x.shape[-2:]), objective.layers)
    if key not in known:
        known[key] = _deepest_read(model, x, objective, [m.name for m in feature_maps(model)])
    return known[key]


def _deepest_read(model: Model, x: torch.Tensor, objective: Objective, names: list[str]) -> str:
    first = objective.example(0)  # the first image's target alone
    reading = Objective(first.fn, (*first.layers, *names), first.name)
    with frozen(model.net), torch.enable_grad():
        acts = read(model, x[:1].detach().clone().requires_grad_(True), reading)
        names = [name for name in names if acts[name].requires_grad]  # not a constant (position embeddings)
        grads = torch.autograd.grad(reading(acts).sum(), [acts[name] for name in names], allow_unused=True)
    reached = [name for name, grad in zip(names, grads) if grad is not None and _on_the_map(grad, x)]
    return reached[-1] if reached else last_spatial_layer(model)


def _on_the_map(grad: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether a layer's gradient is nonzero on its map (a class token's alone is not)."""
    reading = reading_of(grad.shape, tuple(x.shape[-2:]))
    return reading is not None and bool(reading.maps(grad).any())


def last_spatial_layer(model: Model | nn.Module) -> str:
    """The network's last feature map (:func:`~convscope.core.summary.feature_maps`): on a CNN its last
    block, on a transformer the last block's normalized tokens, on a detector its backbone's last."""
    maps = feature_maps(model)
    net = as_model(model).net
    if is_detector(net):
        maps = [m for m in maps if in_body(net, m.name)] or maps
    if not maps:
        raise ConvscopeError("the model has no layer whose output reads as a spatial (C, h, w) map")
    return maps[-1].name
