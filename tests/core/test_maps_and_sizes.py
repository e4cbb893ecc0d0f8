"""Reading outputs as maps, and the sizes a network accepts, against hand-made cases."""

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.core.forward import score
from convscope.core.maps import MapReading, reading_of
from convscope.core.objectives import class_logit
from convscope.core.sizes import size_rule


@pytest.mark.parametrize(("shape", "image", "expected"), [
    ((2, 96, 56, 56), (224, 224), MapReading("channels-first", (56, 56))),
    ((2, 56, 56, 96), (224, 224), MapReading("channels-last", (56, 56))),   # Swin: 96 cannot be a side here
    ((2, 197, 768), (224, 224), MapReading("tokens", (14, 14), 1)),          # ViT: a class token
    ((2, 198, 192), (224, 224), MapReading("tokens", (14, 14), 2)),          # DeiT: class and distillation
    ((2, 196, 64), (224, 224), MapReading("tokens", (14, 14), 0)),
    ((2, 28, 7, 14), (112, 224), MapReading("channels-first", (7, 14))),     # the image's aspect ratio
    ((2, 1000), (224, 224), None),
    ((2, 7, 13, 3), (224, 224), None),
])
def test_readings(shape, image, expected):
    assert reading_of(shape, image) == expected


def test_tokens_read_as_the_grid_they_came_from():
    grid = torch.arange(2 * 5 * 3 * 4.0).view(2, 5, 3, 4)                   # (B, D, h, w)
    tokens = torch.cat([torch.zeros(2, 1, 5), grid.flatten(2).transpose(1, 2)], 1)  # a class token first
    torch.testing.assert_close(reading_of(tokens.shape, (48, 64)).maps(tokens), grid)


class _FixedHead(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(3, 2, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(2 * 16 * 16, 4))


class _Minimum(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(3, 4, 7), nn.MaxPool2d(3), nn.Conv2d(4, 4, 5), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def smallest_working_side(net: nn.Module) -> int:
    for side in range(1, 64):
        try:
            net(torch.zeros(1, 3, side, side))
            return side
        except RuntimeError:
            continue
    raise AssertionError("no side works")


def test_size_rules_equal_brute_force():
    torch.manual_seed(0)
    assert size_rule(_FixedHead(), 3, (32, 32), torch.device("cpu")).fixed == (32, 32)
    net = _Minimum()
    assert size_rule(net, 3, (32, 32), torch.device("cpu")).minimum == smallest_working_side(net) == 21


def test_a_refused_size_is_resized_and_the_gradient_reaches_the_image():
    torch.manual_seed(0)
    model = cs.Model(_FixedHead(), input_size=(32, 32))
    x = torch.rand(1, 3, 20, 20, requires_grad=True)
    value = score(model, x, class_logit(1))
    expected = model(nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False))[:, 1]
    torch.testing.assert_close(value, expected)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert grad.shape == x.shape and bool(grad.abs().sum() > 0)
