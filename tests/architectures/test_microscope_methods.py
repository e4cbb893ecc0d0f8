"""The microscope's methods on the matrix's CNNs (seeded random weights): layer Integrated
Gradients is complete, NMF groups rebuild the layer, channel views raise their channel; the
token and channels-last layers of transformers are refused with one line by every one of them."""

from __future__ import annotations

import pytest
import torch

import convscope as cs

from convscope.attribute.layer import layer_attribution
from convscope.core.hooks import capture
from convscope.core.summary import list_layers, map_layer
from convscope.errors import ConvscopeError
from convscope.inspect.blocks import building_blocks
from convscope.inspect.groups import neuron_groups
from convscope.optimize.visualize import channel_views
from convscope.samples import SAMPLES
from tests.architectures.test_matrix import image, model_of

pytest.importorskip("timm")
#: timm's convnext_atto is left out of the completeness check on purpose: its middle block feeds a
#: LayerNorm that makes the score the same for every positive scale of the layer, so f(alpha A) jumps
#: at alpha = 0 and no quadrature captures it (see convscope.attribute.layer).
CNNS = ["tv-resnet18", "tv-mobilenet_v3_small", "tv-convnext_tiny", "timm-regnety_002", "timm-efficientnet_b0"]


def middle_layer(model) -> str:
    """A channels-first layer about halfway through the network, with at least 8 channels."""
    maps = [info.name for info in list_layers(model)
            if info.reading is not None and info.reading.kind == "channels-first" and info.shape[0] >= 8]
    return maps[len(maps) // 2]


@pytest.mark.parametrize("name", CNNS)
def test_layer_attribution_groups_and_views(name):
    model, x = model_of(name), image(name)
    layer = middle_layer(model)
    result = layer_attribution(model, x, layer, steps=512)  # random weights: kinked paths want many points
    change = float(result.score[0] - result.baseline[0])  # near 0 where a layer scale of 1e-6 mutes the block
    assert abs(float(result.values.sum()) - change) <= 0.05 * abs(change) + 1e-4, (layer, result.values.sum(), change)
    groups = neuron_groups(model, x, layer, groups=4)
    assert groups.error < 1 and torch.allclose(groups.contributions.sum(0), groups.reconstruction.sum(0), atol=1e-4)
    channels = alive_channels(model, layer)
    # without transforms, the views are judged exactly as they were optimized (a random network's unit
    # can answer a jittered image and not the image itself: that is no test of the views)
    views = channel_views(model, layer, channels, diverse=1, size=32, steps=64, seed=0, transforms="none")
    with torch.no_grad():
        acts = capture(model, model.net, torch.cat([views.positive, views.negative]), [layer])[layer].mean((2, 3))
    positive, negative = acts[[0, 1], channels], acts[[2, 3], channels]
    assert (positive - negative >= 0.5 * (positive.abs() + negative.abs())).all(), (layer, channels, acts[:, channels])


def alive_channels(model, layer: str) -> list[int]:
    """The two channels of ``layer`` most active on the sample photos (a dead ReLU unit has no
    gradient to follow from any start)."""
    photos = torch.cat([cs.sample_image(name, size=model.input_size) for name in SAMPLES])
    with torch.no_grad():
        means = capture(model, model.net, photos, [layer])[layer].mean((0, 2, 3))
    return means.argsort(descending=True)[:2].tolist()


@pytest.mark.parametrize("name", ["tv-vit", "timm-swin_tiny"])
def test_transformer_layers_are_refused_in_one_line(name):
    """Token and channels-last (B, h, w, C) layers: a 4-D channels-last output must not pass for
    (C, h, w) maps in any of the methods that factorize or attribute a layer's channels."""
    model, x = model_of(name), image(name)
    kinds = {}
    for info in list_layers(model):
        if info.reading is not None and info.reading.kind in ("tokens", "channels-last"):
            kinds.setdefault(info.reading.kind, []).append(info.name)
    assert kinds, "the network has no token or channels-last layers"
    for layers in kinds.values():
        layer = layers[len(layers) // 2]
        for method in (lambda: map_layer(model, layer, "the microscope"), lambda: neuron_groups(model, x, layer),
                       lambda: layer_attribution(model, x, layer), lambda: building_blocks(model, x, layer)):
            with pytest.raises(ConvscopeError, match=r"needs \(C, h, w\) maps") as error:
                method()
            assert "\n" not in str(error.value)
