"""Activation capture, early stopping, repeated calls, and leaving the model as it was."""

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.core.hooks import Probe, capture, frozen
from tests.conftest import assert_unchanged, hooks_left, snapshot


def test_capture_equals_manual_forward_on_digits(digits):
    x = torch.rand(4, 1, 8, 8)
    acts = capture(digits, digits.net, x, ["features.4", "features.7"])
    manual = digits.normalize(x)
    for i, layer in enumerate(digits.net.features):
        manual = layer(manual)
        if i == 4:
            torch.testing.assert_close(acts["features.4"], manual, rtol=0, atol=0)
        if i == 7:
            torch.testing.assert_close(acts["features.7"], manual, rtol=0, atol=0)


def test_capture_equals_manual_forward_on_default_model(lite0, cat):
    net = lite0.net
    with torch.no_grad():
        acts = capture(lite0, net, cat, ["_blocks.3"])
        manual = net._swish(net._bn0(net._conv_stem(lite0.normalize(cat))))
        for block in net._blocks[:4]:
            manual = block(manual)
    torch.testing.assert_close(acts["_blocks.3"], manual, rtol=0, atol=0)


class Counting(nn.Module):
    """Two layers and a tail that records whether it ran."""

    def __init__(self):
        super().__init__()
        self.head, self.act, self.tail = nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)
        self.tail_calls = 0

    def forward(self, x):
        x = self.act(self.head(x))
        x = self.act(x - 1)           # the same module object called a second time
        self.tail_calls += 1
        return self.tail(x)


def test_stop_early_skips_the_rest_of_the_forward():
    net = Counting()
    capture(net, net, torch.rand(2, 3), ["head"], stop_early=True)
    assert net.tail_calls == 0
    capture(net, net, torch.rand(2, 3), ["head"], stop_early=False)
    assert net.tail_calls == 1


def test_repeated_module_calls_are_addressed_by_index():
    net = Counting()
    x = torch.rand(2, 3)
    acts = capture(net, net, x, ["act", "act@1"])
    first = torch.relu(net.head(x))
    torch.testing.assert_close(acts["act"], first)
    torch.testing.assert_close(acts["act@1"], torch.relu(first - 1))


def test_probe_resets_between_forwards():
    net = Counting()
    with Probe(net, ["act@1"]) as probe:
        for x in (torch.rand(1, 3) * 4, torch.rand(1, 3) * 4):
            expected = torch.relu(torch.relu(net.head(x)) - 1)
            torch.testing.assert_close(probe.forward(net, x)["act@1"], expected)


def test_hooks_removed_when_the_forward_raises():
    net = Counting()

    def broken(x):
        net(x)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        capture(broken, net, torch.rand(1, 3), ["head"], stop_early=False)
    assert hooks_left() == []


def test_unknown_layer_lists_close_names(lite0):
    with pytest.raises(cs.ConvscopeError, match=r"unknown layer '_blocks\.3\._bn7'.*_blocks\.3\._bn"):
        capture(lite0, lite0.net, torch.rand(1, 3, 32, 32), ["_blocks.3._bn7"])
    assert hooks_left() == []


def test_layer_that_never_runs_is_an_error():
    net = Counting()
    with pytest.raises(cs.ConvscopeError, match="did not run"):
        capture(net, net, torch.rand(1, 3), ["act@5"])


def test_frozen_restores_mode_and_flags_exactly():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 2))
    net.train()
    net[1].eval()
    net[2].weight.requires_grad_(False)
    before = snapshot(net)
    with pytest.raises(ValueError), frozen(net):
        assert not net.training and not any(p.requires_grad for p in net.parameters())
        raise ValueError
    assert_unchanged(before, net)
