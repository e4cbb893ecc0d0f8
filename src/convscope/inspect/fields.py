"""Receptive fields shown on an image, analytic and as measured by the input gradient."""

from __future__ import annotations

import copy

import torch
from torch import nn

from convscope.core.maps import reading_of
from convscope.core.hooks import Probe, frozen
from convscope.core.receptive import ReceptiveField
from convscope.core.render import Picture, draw_boxes, picture
from convscope.core.summary import list_layers
from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.model import Model, as_model

COLORS = ["#00e5ff", "#76ff03", "#ffea00", "#ff9100", "#ff1744", "#d500f9"]


def receptive_field(model: Model | nn.Module, layer: str) -> ReceptiveField:
    """The analytic receptive field of ``layer``'s output at the model's input size."""
    fields = {info.name: info.receptive_field for info in list_layers(model)}
    if layer not in fields:
        raise unknown_choice("layer", layer, fields)
    if fields[layer] is None:
        raise ConvscopeError(f"layer {layer!r} does not output a tensor")
    return fields[layer]


def gradient_support(model: Model | nn.Module, layer: str, unit: tuple[int, int], *, trials: int = 3,
                     seed: int = 0) -> tuple[int, int, int, int]:
    """The input pixels that can change one output position: the empirical receptive field.

    The gradient of a random combination of the position's channels w.r.t. random input images
    is taken ``trials`` times; pixels with a nonzero gradient in any trial form the support.

    Returns:
        ``(top, left, bottom, right)`` inclusive bounding box of the support, in input pixels.
    """
    model = as_model(model)
    generator = torch.Generator().manual_seed(seed)
    h, w = model.input_size
    x = torch.rand(trials, model.channels, h, w, generator=generator, dtype=torch.float64).to(model.device)
    x = model.normalize(x)
    x.requires_grad_(True)
    net = copy.deepcopy(model.net).double()  # float64 so no tiny gradient underflows to zero
    with frozen(net), Probe(net, [layer], stop_early=True) as probe:
        output = probe.forward(net, x)[layer]
        reading = reading_of(output.shape, (h, w))
        if reading is None:
            raise ConvscopeError(f"layer {layer!r} gives {tuple(output.shape[1:])}, which does not read as maps")
        units = reading.maps(output)[:, :, unit[0], unit[1]]
        weights = torch.randn(units.shape[1], generator=generator, dtype=units.dtype).to(units.device)
        (grad,) = torch.autograd.grad((units * weights).sum(), x)  # not the plain sum: a layer norm's is constant
    rows, cols = torch.nonzero(grad.abs().sum(dim=(0, 1)) > 0, as_tuple=True)
    if rows.numel() == 0:
        raise ConvscopeError(f"no input pixel changes {layer} at {unit}")
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def clipped_box(rf: ReceptiveField, unit: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The analytic box of ``unit`` clipped to an image of ``size`` (pixels outside are padding)."""
    top, left, bottom, right = rf.box(*unit)
    return max(top, 0), max(left, 0), min(bottom, size[0] - 1), min(right, size[1] - 1)


def receptive_field_picture(model: Model | nn.Module, x: torch.Tensor, layers: list[str]) -> Picture:
    """Boxes of the center unit's receptive field of each layer, drawn over the image.

    Args:
        model: a Model or network.
        x: ``(1, 3, H, W)`` image at the model's input size, in [0, 1].
        layers: layer names, shallow to deep.
    """
    model = as_model(model)
    boxes, numbers = [], {}
    for layer in layers:
        rf = receptive_field(model, layer)
        shape = _output_shape(model, layer)
        unit = (shape[-2] // 2, shape[-1] // 2)
        boxes.append(clipped_box(rf, unit, model.input_size))
        numbers[layer] = {"size": rf.size[0], "jump": rf.jump[0], "start": rf.start[0]}
    image = draw_boxes(x[0].cpu(), boxes, COLORS * 4)
    caption = "Center unit's receptive field: " + ", ".join(
        f"{layer} {n['size']}px" for layer, n in numbers.items())
    return picture(image, caption, **numbers)


def _output_shape(model: Model, layer: str) -> tuple[int, ...]:
    return next(info.shape for info in list_layers(model) if info.name == layer)
