"""A table of a network's layers: type, output shape, parameters, receptive field."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from convscope.core.hooks import frozen, trace_calls
from convscope.core.maps import MapReading, reading_of
from convscope.core.receptive import ReceptiveField, ReceptiveFieldTracer
from convscope.models.detectors import run_network
from convscope.models.model import Model, as_model


@dataclass(frozen=True)
class LayerInfo:
    """One module call of the forward pass.

    Attributes:
        name: dotted module name, ``name@k`` for the k-th call of a reused module.
        kind: the module's class name.
        shape: output shape without the batch dimension, e.g. ``(32, 112, 112)``.
        parameters: parameters of the module and its children.
        receptive_field: where each output unit looks in the input, None if not a tensor.
        reading: how the output reads as ``(C, h, w)`` maps (:mod:`convscope.core.maps`), None if
            it is no map.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    parameters: int
    receptive_field: ReceptiveField | None
    reading: MapReading | None = None

    @property
    def map_shape(self) -> tuple[int, ...]:
        """``(C, h, w)`` for a map (tokens and channels-last stages included), else :attr:`shape`."""
        if self.reading is None:
            return self.shape
        channels = self.shape[0] if self.reading.kind == "channels-first" else self.shape[-1]
        return (channels, *self.reading.grid)


def list_layers(model: Model | torch.nn.Module, *, size: tuple[int, int] | None = None) -> list[LayerInfo]:
    """Runs one forward pass on a blank image and describes every module call, in order.

    Args:
        model: a Model or network.
        size: input ``(height, width)``; the model's input size by default.

    Returns:
        One :class:`LayerInfo` per module call (containers after their children).
    """
    model = as_model(model)
    height, width = size or model.input_size
    x = torch.zeros(1, model.channels, height, width, device=model.device)
    with frozen(model.net), torch.no_grad(), trace_calls(model.net) as calls:
        tracer = ReceptiveFieldTracer(x)
        with tracer:
            run_network(model.net, x)
    return [LayerInfo(call.name, type(call.module).__name__, _shape(call.output),
                      sum(p.numel() for p in call.module.parameters()),
                      tracer.field(call.output) if isinstance(call.output, torch.Tensor) else None,
                      reading_of(call.output.shape, (height, width)) if isinstance(call.output, torch.Tensor) else None)
            for call in calls]


def _shape(output) -> tuple[int, ...]:
    return tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()


def layer_names(model: Model | torch.nn.Module) -> list[str]:
    """The names :func:`list_layers` reports, in forward order."""
    return [info.name for info in list_layers(model)]


def feature_maps(model: Model | torch.nn.Module) -> list[LayerInfo]:
    """The calls whose outputs are feature maps of the image, in forward order: outputs that read as
    maps larger than 1x1 (convolutional, channels-last or tokens), leaving out calls that only pass
    a map on or resample it (identities, dropouts, pools such as VGG's ``avgpool``) and anything
    inside attention (its weights, queries and keys are no map of the image). Squeeze-excitation
    gates, 1x1, are not maps either. The defaults of Grad-CAM and style transfer are chosen here."""
    return [info for info in list_layers(model)
            if info.reading is not None and max(info.reading.grid) > 1 and info.kind not in _PASSING
            and not _ATTENTION.search(info.name)]


#: Modules that pass a map on unchanged or only resample it.
_PASSING = frozenset({"Identity", "Dropout", "Dropout2d", "DropPath", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
                      "AvgPool2d", "MaxPool2d", "Flatten", "Upsample"})
_ATTENTION = re.compile(r"attn|attention", re.IGNORECASE)


def map_layer(model: Model | torch.nn.Module, layer: str, purpose: str) -> LayerInfo:
    """The row of ``layer``, which must output channels-first ``(C, h, w)`` maps (what channel and
    direction objectives read); otherwise a one-line error saying why ``purpose`` cannot use it."""
    from convscope.errors import ConvscopeError, unknown_choice

    infos = {info.name: info for info in list_layers(model)}
    if layer not in infos:
        raise unknown_choice("layer", layer, infos)
    info = infos[layer]
    if info.reading is None or info.reading.kind != "channels-first":
        kind = "no maps" if info.reading is None else f"{info.reading.kind} maps"
        raise ConvscopeError(f"layer {layer!r} outputs {info.shape} ({kind}); {purpose} needs (C, h, w) maps: "
                             f"choose a convolutional layer of this network")
    return info
