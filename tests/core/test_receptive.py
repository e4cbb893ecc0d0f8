"""Analytic receptive fields against known values and against the input gradient's support."""

import pytest
import torch

import convscope as cs
from convscope.inspect.fields import clipped_box, gradient_support, receptive_field
from tests.helpers import Residual, alexnet_like, vgg16_like


def fields(net, size=224):
    return {info.name: info.receptive_field for info in cs.list_layers(net, size=(size, size))}


def test_alexnet_known_values():
    rf = fields(alexnet_like(), 227)
    assert rf["0"].size == (11, 11) and rf["0"].jump == (4, 4)
    assert rf["10"].size == (163, 163)
    assert rf["12"].size == (195, 195) and rf["12"].jump == (32, 32)


def test_vgg16_known_values():
    rf = fields(vgg16_like())
    assert rf["28"].size == (196, 196) and rf["28"].jump == (16, 16)
    assert rf["30"].size == (212, 212) and rf["30"].jump == (32, 32)


def test_residual_sum_is_union_of_branches():
    rf = fields(Residual(), 16)
    assert rf["a"].size == (3, 3)
    assert rf["b"].size == (7, 7)
    assert rf["b"].start == (0.0, 0.0)  # padding keeps the first unit centered on pixel 0


def test_start_of_padded_stride_two_conv():
    rf = fields(torch.nn.Sequential(torch.nn.Conv2d(3, 1, 3, stride=2, padding=1)), 8)["0"]
    assert rf.start == (0.0, 0.0) and rf.jump == (2, 2)  # unit 0 is centered on pixel 0
    assert rf.box(1, 1) == (1, 1, 3, 3)


@pytest.mark.parametrize("layer", ["_blocks.0._swish", "_blocks.2", "_blocks.4._swish@1"])
@pytest.mark.parametrize("unit", [(0, 0), "center"])
def test_analytic_equals_gradient_support_on_default_model(lite0, layer, unit):
    rf = receptive_field(lite0, layer)
    shape = next(i.shape for i in cs.list_layers(lite0) if i.name == layer)
    unit = (shape[1] // 2, shape[2] // 2) if unit == "center" else unit
    assert clipped_box(rf, unit, lite0.input_size) == gradient_support(lite0, layer, unit)


def test_gradient_support_on_digits_equals_analytic(digits):
    rf = receptive_field(digits, "features.2")
    assert clipped_box(rf, (3, 3), (8, 8)) == gradient_support(digits, "features.2", (3, 3)) == (1, 1, 5, 5)
