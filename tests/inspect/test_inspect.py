"""Filters, activations, predictions and receptive-field pictures, and their side effects."""

import pytest
import torch

import convscope as cs
from convscope.inspect.fields import gradient_support, receptive_field_picture
from tests.conftest import assert_unchanged, snapshot


def test_first_layer_filters_are_the_weights(lite0):
    result = cs.filters(lite0)
    assert result.layer == "_conv_stem"
    torch.testing.assert_close(result.weight, lite0.net._conv_stem.weight.detach())
    tiles = result.tiles()
    w = result.weight[5]
    torch.testing.assert_close(tiles[5], 0.5 + 0.5 * w / w.abs().max())  # zero weight is mid-gray
    assert result.grid().array.shape[2] == 3


def test_filters_of_non_rgb_layer_are_gray_rows(lite0):
    result = cs.filters(lite0, "_blocks.1._project_conv")  # 1x1 kernels, 96 inputs
    assert result.tiles(max_out=4, max_in=8).shape == (32, 1, 1, 1)


def test_filters_refuse_a_non_convolution(lite0):
    with pytest.raises(cs.ConvscopeError, match="not a Conv2d"):
        cs.filters(lite0, "_bn0")


def test_activation_grid_is_sorted_by_strength(lite0, cat):
    result = cs.activations(lite0, cat, "_blocks.2._swish@1")
    strength = result.maps[0].mean(dim=(1, 2))
    order = result.order()
    assert torch.all(strength[order][:-1] >= strength[order][1:])
    assert result.grid().numbers["channels"][0] == int(strength.argmax())


def test_activations_are_batched(digits):
    x = torch.rand(3, 1, 8, 8)
    batch = cs.activations(digits, x, "features.1").maps
    single = torch.cat([cs.activations(digits, x[i:i + 1], "features.1").maps for i in range(3)])
    torch.testing.assert_close(batch, single)


def test_overlay_refuses_a_channel_out_of_range(digits):
    with pytest.raises(cs.ConvscopeError, match="channel 99 is out of range.*0..15"):
        cs.activations(digits, torch.rand(1, 1, 8, 8), "features.1").overlay(99)


def test_classify_top_k_is_sorted_and_sums_below_one(lite0, cat):
    top = cs.classify(lite0, cat, top=5)[0]
    probs = [p.probability for p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1


METHODS = {
    "filters": lambda m, x: cs.filters(m),
    "activations": lambda m, x: cs.activations(m, x, "_blocks.1"),
    "classify": lambda m, x: cs.classify(m, x),
    "list_layers": lambda m, x: cs.list_layers(m),
    "gradient_support": lambda m, x: gradient_support(m, "_blocks.0", (5, 5)),
    "receptive_fields": lambda m, x: receptive_field_picture(m, x, ["_blocks.0", "_blocks.3"]),
    "bad layer": lambda m, x: cs.activations(m, x, "_blocks.99"),
    "bad channel": lambda m, x: cs.activations(m, x, "_blocks.1").overlay(10**6),
    "raising forward": lambda m, x: cs.activations(m, x.double(), "_blocks.1"),  # fails inside the net
}


@pytest.mark.parametrize("method", METHODS)
def test_model_unchanged_after_every_method(lite0, cat, method):
    lite0.net.train()                      # a state the methods must not keep
    lite0.net._fc.weight.requires_grad_(False)
    before = snapshot(lite0.net)
    try:
        METHODS[method](lite0, cat)
    except (cs.ConvscopeError, RuntimeError):
        pass
    finally:
        assert_unchanged(before, lite0.net)
        lite0.net.eval()
        lite0.net._fc.weight.requires_grad_(True)
