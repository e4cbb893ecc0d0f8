"""Tour section: predictions, filters, activations and receptive fields of the model."""

from __future__ import annotations

from convscope.core.layers import conv_layers
from convscope.core.render import picture
from convscope.core.summary import list_layers
from convscope.inspect.activations import activations
from convscope.inspect.fields import receptive_field_picture
from convscope.inspect.filters import filters
from convscope.inspect.predictions import classify
from convscope.samples import SAMPLES, sample_image
from convscope.tour.runner import Shot, TourContext

SECTION = "Inspect: what the network sees"
RECTIFIERS = ("ReLU", "ReLU6", "LeakyReLU", "SiLU", "GELU", "Hardswish", "Hardtanh", "MemoryEfficientSwish")


def inspect_shots(context: TourContext) -> list[Shot]:
    model = context.model
    size = model.input_size
    cat = sample_image("cat", size=size)
    kernels = _spatial_convs(model)
    deep_layer, mid_layer = _layer_at(model, 0.8), _layer_at(model, 0.4)

    def prediction(name: str):
        def make():
            x = sample_image(name, size=size)
            top = classify(model, x, top=3)[0]
            caption = "; ".join(f"{p.label} {p.probability:.1%}" for p in top)
            return picture(x[0], caption, predictions=[p.as_dict() for p in top])
        return make

    shots = [Shot(SECTION, f"Prediction: {name}", prediction(name)) for name in SAMPLES]
    shots += [
        Shot(SECTION, "First-layer filters", lambda: filters(model).grid()),
        Shot(SECTION, f"Filters of {kernels[1]}", lambda: filters(model, kernels[1]).grid(max_out=32)),
        Shot(SECTION, f"Activations of {mid_layer}", lambda: activations(model, cat, mid_layer).grid()),
        Shot(SECTION, f"Activations of {deep_layer}", lambda: activations(model, cat, deep_layer).grid()),
        Shot(SECTION, f"Strongest channel of {mid_layer}", lambda: _strongest(model, cat, mid_layer)),
        Shot(SECTION, "Receptive fields", lambda: receptive_field_picture(model, cat, _ladder(model))),
    ]
    return shots


def _strongest(model, x, layer):
    maps = activations(model, x, layer)
    return maps.overlay(int(maps.order()[0]))


def _spatial_convs(model) -> list[str]:
    """Convolutions with kernels larger than 1x1 (the first one twice if it is the only one)."""
    names = [n for n in conv_layers(model.net) if max(filters(model, n).weight.shape[-2:]) > 1]
    return (names * 2)[:max(2, len(names))]


def _spatial_layers(model) -> list[str]:
    """Rectifier outputs with spatial maps, in forward order; any spatial layer if there are none."""
    spatial = [info for info in list_layers(model)
               if len(info.shape) == 3 and info.shape[-1] > 1 and info.receptive_field is not None
               and not info.receptive_field.whole and info.kind not in ("ZeroPad2d", "Identity")]
    rectified = [info.name for info in spatial if info.kind in RECTIFIERS]
    return rectified or [info.name for info in spatial]


def _layer_at(model, depth: float) -> str:
    names = _spatial_layers(model)
    return names[min(int(depth * len(names)), len(names) - 1)]


def _ladder(model) -> list[str]:
    names = _spatial_layers(model)
    return [names[int(f * (len(names) - 1))] for f in (0.05, 0.2, 0.4, 0.6)]
