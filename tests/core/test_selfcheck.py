"""The fast paths' self-check: a stand-in runs only once it matched float64 autograd of the original."""

from __future__ import annotations

import copy

import torch
from torch import nn

import convscope as cs
from convscope.attribute.core import attribute
from convscope.core import selfcheck
from convscope.core.fastpath import fast_model
from convscope.core.folding import folded_copy
from convscope.core.objectives import class_logit
from tests.conftest import assert_unchanged, snapshot


def _norm(channels: int, seed: int) -> nn.BatchNorm2d:
    generator = torch.Generator().manual_seed(seed)
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(channels, generator=generator))
        norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
        norm.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
        norm.bias.copy_(torch.randn(channels, generator=generator))
    return norm.eval()


class _Tokens(nn.Module):
    """conv -> batch norm -> tokens (``flatten(2).transpose(1, 2)``, as LeViT does) -> linear head:
    a linear network, so its input gradient is one matrix whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.head = nn.Linear(8 * 36, 5)
        self.norm = _norm(8, 1)

    def forward(self, x):
        return self.head(self.norm(self.conv(x)).flatten(2).transpose(1, 2).flatten(1))


def _columns(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """The gradient of a linear network, by brute force: the output for each basis image at once
    (a batch of 108, in float64), less the output for zero."""
    net = copy.deepcopy(net).double()
    basis = torch.eye(x[0].numel(), dtype=torch.float64).view(-1, *x.shape[1:])
    with torch.no_grad():
        return (net(basis)[:, target] - net(torch.zeros_like(basis[:1]))[:, target]).view(x.shape)


def test_a_network_that_makes_tokens_of_a_batch_norm_gets_its_true_gradient_for_one_image():
    """At batch 1, plain autograd of this network is wrong in PyTorch's CPU batch norm (the module
    docstring of convscope.core.selfcheck); the fast path's gradient equals brute force."""
    model = cs.Model(_Tokens(), input_size=(6, 6))
    x = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    before = snapshot(model.net)
    expected = _columns(model.net, x, 3)
    got = attribute(model, x, class_logit(3))
    assert selfcheck.relative_error(got, expected) < 1e-5
    assert_unchanged(before, model.net)
    assert any(verdict.trusted_at(1) for verdict in selfcheck.verdicts(model))
    checks = cs.saliency(model, x, 3).checks  # the result says which stand-in ran, and how close it came
    assert checks and all("from float64" in line for line in checks) and any(": used" in line for line in checks)


class _PlainOnly(_Tokens):
    """The same tokens, with no stand-in to take: the batch norm reads a sum (nothing folds), and a
    ``.view`` of the map refuses channels-last activations. Only the original in the default layout
    is left, and its gradient at batch 1 is PyTorch's wrong one."""

    def forward(self, x):
        maps = self.conv(x)
        tokens = self.norm(maps + 1).flatten(2).transpose(1, 2).flatten(1)
        return self.head(tokens) + maps.view(len(x), -1).mean(1, keepdim=True)


def test_where_only_a_pair_gets_the_gradient_right_one_image_runs_as_a_pair():
    model = cs.Model(_PlainOnly(), input_size=(6, 6))
    x = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    expected = _columns(model.net, x, 1)
    got = attribute(model, x, class_logit(1))
    assert selfcheck.relative_error(got, expected) < 1e-5
    verdicts = {v.path: v for v in selfcheck.verdicts(model)}
    assert verdicts["original"].trusted_at(2) and verdicts["original, channels-last"].problem
    # what the check saw at batch 1 (when PyTorch fixes the kernel, this says so)
    assert not verdicts["original"].trusted_at(1), str(verdicts["original"])


class _Drifting(nn.Module):
    """conv + batch norm (foldable) -> relu -> head, with a term that the folded copy alone adds
    (it reads its own structure): 1e-6 of the output, but a gradient term 1e-2 of the gradient's. A
    forward check passes it (the old 1e-4 check did); the gradient check must not."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(6)
            self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
            self.head = nn.Linear(6, 4)
        self.norm = _norm(6, 7)

    def forward(self, x):
        out = self.head(torch.relu(self.norm(self.conv(x))).mean((2, 3)))
        if isinstance(self.norm, nn.Identity):  # the folded copy
            out = out + 1e-6 * torch.sin(1e4 * x).mean((1, 2, 3))[:, None]
        return out


def test_a_stand_in_whose_gradient_drifts_is_not_used_and_the_verdict_says_why():
    model = cs.Model(_Drifting().eval(), input_size=(8, 8))
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    assert fast_model(model, [], x).net is model.net
    copy_ = folded_copy(model, x).net
    with torch.no_grad():
        assert selfcheck.relative_error(copy_(x), model(x)) < 1e-4  # what a forward check would accept
    folded = [v for v in selfcheck.verdicts(model) if v.path.startswith("folded")]
    assert folded and not any(v.trusted for v in folded)
    assert all(v.single[1] > v.tolerance[1] for v in folded)
    assert "not used" in str(folded[0]) and "float64" in str(folded[0])


def test_the_tolerance_is_a_few_times_float32s_own_error_measured_on_the_probe():
    model = cs.Model(_Tokens(), input_size=(6, 6))
    x = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(10))
    attribute(model, x, class_logit(0))
    verdict = selfcheck.verdicts(model)[0]
    pair = torch.cat([x, x.flip(-1)])
    outputs64 = copy.deepcopy(model.net).double()(model.normalize(pair.double()))
    own = selfcheck.relative_error(model(pair).detach(), outputs64.detach())
    assert verdict.tolerance[0] == max(selfcheck.FLOOR, selfcheck.SLACK * own)
    assert verdict.size == (6, 6) and verdict.device == "cpu"


def test_verdicts_are_made_once_per_network_state_and_size():
    model = cs.Model(_Tokens(), input_size=(6, 6))
    x = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(11))
    attribute(model, x, class_logit(0))
    made = len(selfcheck.verdicts(model))
    attribute(model, torch.rand(2, 3, 6, 6), class_logit(1))
    assert len(selfcheck.verdicts(model)) == made  # cached: same size, same weights
    with torch.no_grad():
        model.net.norm.running_mean.add_(0.5)
    attribute(model, x, class_logit(0))
    assert len(selfcheck.verdicts(model)) > made  # new numbers, new verdicts
