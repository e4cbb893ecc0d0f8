"""Analytic receptive fields against known values and against the input gradient's support."""

import json

import pytest
import torch

import convscope as cs
from convscope.core.receptive import Axis
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


class _Resize(torch.nn.Module):
    def __init__(self, **settings):
        super().__init__()
        self.settings = settings

    def forward(self, x):
        return torch.nn.functional.interpolate(x, **self.settings)


def _resizing(**settings) -> torch.nn.Module:
    """A stride-2 convolution, a resize, a 3x3 convolution: fields with a fractional jump."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), _Resize(**settings),
                               torch.nn.Conv2d(4, 4, 3, padding=1)).eval()


def assert_contains_the_support(model, layer: str, slack: int) -> None:
    """The analytic box of every unit on the diagonal holds the gradient's support, with at most
    ``slack`` pixels to spare on each side (a resize's rounding is not known to the field)."""
    rf = receptive_field(model, layer)
    shape = next(i.shape for i in cs.list_layers(model) if i.name == layer)
    for i in range(min(shape[-2:])):
        box, support = clipped_box(rf, (i, i), model.input_size), gradient_support(model, layer, (i, i))
        assert box[:2] <= support[:2] and box[2:] >= support[2:], (layer, i, box, support)
        assert max(abs(a - b) for a, b in zip(box, support)) <= slack, (layer, i, box, support)


RESIZES = [dict(size=23, mode="nearest"), dict(scale_factor=2.0, mode="nearest"), dict(size=11, mode="nearest-exact"),
           dict(size=11, mode="bilinear"), dict(size=23, mode="bilinear", align_corners=True),
           dict(size=13, mode="bicubic"), dict(size=7, mode="bilinear", antialias=True),
           dict(size=9, mode="bicubic", antialias=True), dict(scale_factor=0.75, mode="bilinear")]


@pytest.mark.parametrize("settings", RESIZES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_fields_through_a_resize_hold_the_gradients_support(settings):
    """Resizes had made every later field the whole image (CrossViT's second branch, decoders)."""
    model = cs.Model(_resizing(**settings), input_size=(32, 32))
    rf = receptive_field(model, "2")
    assert not rf.whole
    for layer in ("1", "2"):  # up to one unit of the stride-2 map before the resize, and a pixel of rounding
        assert_contains_the_support(model, layer, slack=3)


def test_fractional_fields_keep_one_patch_size_and_survive_json():
    model = cs.Model(_resizing(size=23, mode="bilinear"), input_size=(32, 32))
    rf = receptive_field(model, "2")
    assert rf.jump[0] == pytest.approx(32 / 23)  # 16 units at 2 px, spread over 23
    assert {rf.box(i, i)[2] - rf.box(i, i)[0] + 1 for i in range(23)} == {rf.size[0]}
    assert Axis.from_dict(json.loads(json.dumps(rf.height.as_dict()))) == rf.height


def test_fields_through_outlook_attention_hold_the_gradients_support():
    """timm's VOLO outlook attention: unfold, a product of two input-dependent operands within each
    position's window, fold with stride 2. Its fields had been the whole image (149 of 224 px)."""
    from timm.models.volo import OutlookAttention

    class Outlooker(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 8, 4, stride=4)
            self.attn = OutlookAttention(8, num_heads=2, kernel_size=3, padding=1, stride=2)

        def forward(self, x):
            return self.attn(self.stem(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    torch.manual_seed(0)
    model = cs.Model(Outlooker().eval(), input_size=(48, 48))
    assert not receptive_field(model, "attn").whole
    assert_contains_the_support(model, "attn.pool", slack=0)
    assert_contains_the_support(model, "attn", slack=4)  # the fold's positions are rounded by one unit
