"""Gradient, deconvnet and guided backprop against independent references."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convscope as cs
from convscope.attribute.core import attribute
from convscope.core.objectives import channel, class_logit, custom, neuron
from convscope.core.rectifiers import apply_rule
from tests.conftest import assert_unchanged, snapshot


class Distinct(nn.Module):
    """conv -> ReLU -> conv -> ReLU6 -> pool -> linear, with one module per rectifier."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.r1, self.r2 = nn.ReLU(), nn.ReLU6()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.r2(self.c2(self.r1(self.c1(x))))
        return self.fc(x.mean((2, 3)))


class Reused(Distinct):
    """The same, with one in-place ReLU6 module object called twice (as the default model does)."""

    def __init__(self):
        super().__init__()
        self.shared = nn.ReLU6(inplace=True)

    def forward(self, x):
        x = self.shared(self.c2(self.shared(self.c1(x))))
        return self.fc(x.mean((2, 3)))


class Functional(Distinct):
    """The same, with functional calls only."""

    def forward(self, x):
        x = F.relu6(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean((2, 3)))


def three_ways():
    nets = [Distinct(), Reused(), Functional()]
    for net in nets[1:]:
        net.load_state_dict(nets[0].state_dict(), strict=False)
    return nets


@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
def test_rule_reaches_rectifiers_however_called(rule):
    x = torch.rand(2, 3, 8, 8) * 4  # large enough that ReLU6 saturates somewhere
    maps = [attribute(net, x, class_logit(1), rule=rule) for net in three_ways()]
    plain = attribute(three_ways()[0], x, class_logit(1))
    torch.testing.assert_close(maps[0], maps[1], rtol=0, atol=0)
    torch.testing.assert_close(maps[0], maps[2], rtol=0, atol=0)
    assert not torch.allclose(maps[0], plain)


def test_plain_gradient_equals_autograd():
    net = Distinct()
    x = torch.rand(3, 3, 8, 8)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(net(leaf)[:, 2].sum(), leaf)
    torch.testing.assert_close(attribute(net, x, class_logit(2)), expected)


class Flattening(nn.Module):
    """conv -> ReLU -> ``.view`` -> linear: its activations cannot be channels-last."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(y.view(y.size(0), -1))


@pytest.mark.parametrize("rule", ["gradient", "guided"])
def test_a_network_flattening_with_view_runs_in_its_own_layout(rule):
    net, x = Flattening(), torch.rand(2, 3, 8, 8)
    before = snapshot(net)
    got = attribute(net, x, class_logit(1), rule=rule)
    assert_unchanged(before, net)
    assert got.is_contiguous()
    leaf = x.clone().requires_grad_(True)
    total = net(leaf)[:, 1].sum()
    apply_rule(total, rule)
    (expected,) = torch.autograd.grad(total, leaf)
    torch.testing.assert_close(got, expected)


def test_guided_and_deconvnet_by_hand():
    """y = w2 . relu(w1 * x): one hidden unit per input, so each rule's gradient is written out."""
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1, bias=False))
    with torch.no_grad():
        net[0].weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
        net[3].weight[:] = torch.tensor([[1.0, -2.0, 3.0, 0.5, -1.0, 2.0, -3.0, 1.0]])
    x = torch.tensor([[0.5, -1.0], [2.0, -0.5]]).view(1, 1, 2, 2)
    # hidden channel 0 = x (positive where x > 0), channel 1 = -x (positive where x < 0)
    w0, w1 = torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.tensor([-1.0, 2.0, -3.0, 1.0])
    xs = x.flatten()
    plain = w0 * (xs > 0) - w1 * (xs < 0)
    guided = w0.clamp_min(0) * (xs > 0) - w1.clamp_min(0) * (xs < 0)
    deconv = w0.clamp_min(0) - w1.clamp_min(0)
    objective = class_logit(0)
    torch.testing.assert_close(attribute(net, x, objective).flatten(), plain)
    torch.testing.assert_close(attribute(net, x, objective, rule="guided").flatten(), guided)
    torch.testing.assert_close(attribute(net, x, objective, rule="deconvnet").flatten(), deconv)


@pytest.mark.parametrize("rule,peer", [("guided", "GuidedBackprop"), ("deconvnet", "Deconvolution"),
                                       ("gradient", "Saliency")])
def test_equals_captum_on_distinct_relu_modules(rule, peer):
    captum = pytest.importorskip("captum.attr")
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    x = torch.rand(3, 3, 12, 12)
    target = torch.tensor([0, 3, 4])
    kwargs = {"abs": False} if peer == "Saliency" else {}
    expected = getattr(captum, peer)(net).attribute(x.clone().requires_grad_(True), target=target, **kwargs)
    torch.testing.assert_close(attribute(net, x, class_logit(target), rule=rule), expected)


def test_batch_equals_one_by_one():
    net = Distinct()
    x = torch.rand(3, 3, 8, 8) * 3
    batch = attribute(net, x, class_logit(1), rule="guided")
    single = torch.cat([attribute(net, x[i:i + 1], class_logit(1), rule="guided") for i in range(3)])
    torch.testing.assert_close(batch, single)


def test_objective_algebra_is_linear():
    net = Distinct()
    x = torch.rand(2, 3, 8, 8)
    a, b = class_logit(0), class_logit(3)
    combined = attribute(net, x, 2.5 * a - b + 7.0)
    torch.testing.assert_close(combined, 2.5 * attribute(net, x, a) - attribute(net, x, b))
    with pytest.raises(TypeError):
        a * b


def test_neuron_and_channel_objectives_read_inner_layers():
    net = Distinct()
    x = torch.rand(1, 3, 8, 8)
    leaf = x.clone().requires_grad_(True)
    inner = net.c2(net.r1(net.c1(leaf)))
    (expected,) = torch.autograd.grad(inner[0, 4, 2, 5] + inner[0, 1].mean(), leaf)
    got = attribute(net, x, neuron("c2", 4, 2, 5) + channel("c2", 1))
    torch.testing.assert_close(got, expected)


def test_smooth_activations_are_refused_for_guided():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.SiLU(), nn.Flatten())
    with pytest.raises(cs.ConvscopeError, match="SiLU"):
        attribute(net, torch.rand(1, 3, 5, 5), custom(lambda a: a["output"].sum(1), ["output"]), rule="guided")


def test_input_and_model_untouched(lite0, cat):
    before = snapshot(lite0.net)
    x = cat.clone()
    attribute(lite0, x, class_logit(281), rule="guided")
    assert torch.equal(x, cat) and not x.requires_grad and x.grad is None
    assert_unchanged(before, lite0.net)


def test_default_model_guided_differs_from_plain(lite0, cat):
    plain = attribute(lite0, cat, class_logit(281))
    guided = attribute(lite0, cat, class_logit(281), rule="guided")
    assert (guided != plain).float().mean() > 0.5  # the ReLU6 rule was applied, not skipped
