"""Batch norms folded into convolutions: the same values as the original network (autograd on it is
the reference), and no folding where it would change them."""

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.attribute.core import attribute
from convscope.core.fastpath import fast_model
from convscope.core.hooks import capture
from convscope.core.objectives import class_logit
from tests.conftest import assert_unchanged, snapshot


def _trained_norm(channels: int, generator: torch.Generator) -> nn.BatchNorm2d:
    """A batch norm with statistics far from the identity, so a wrong fold shows."""
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(channels, generator=generator) * 0.3)
        norm.running_var.copy_(torch.rand(channels, generator=generator) * 3 + 0.2)
        norm.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
        norm.bias.copy_(torch.rand(channels, generator=generator) * 0.5)
    return norm


class _Net(nn.Module):
    """conv+bn (no conv bias) -> relu -> depthwise conv+bn (bias) called twice -> conv -> head.

    ``variant`` breaks foldability on purpose: ``"residual"`` also adds the first conv's raw output
    to its normalized one; ``"norm_first"`` puts a batch norm before the convolution it follows in
    the code (pre-activation order); ``"scaled"`` scales a conv output in place before its norm.
    """

    def __init__(self, variant: str = "plain"):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
            self.depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=6)
            self.conv3 = nn.Conv2d(6, 5, 3, stride=2)
            self.head = nn.Linear(5, 4)
        self.norm1, self.norm2 = _trained_norm(6, generator), _trained_norm(6, generator)
        self.pre = _trained_norm(3, generator)
        self.variant = variant

    def forward(self, x):
        if self.variant == "norm_first":
            x = self.pre(x)
        raw = self.conv1(x)
        if self.variant == "scaled":
            raw.mul_(2.0)
        h = torch.relu(self.norm1(raw))
        if self.variant == "residual":
            h = h + raw
        for _ in range(2):
            h = torch.relu(self.norm2(self.depthwise(h)))
        return self.head(self.conv3(h).mean((2, 3)))


def _model(variant: str = "plain") -> cs.Model:
    """The network in eval mode (the reference forwards below run it directly)."""
    return cs.Model(_Net(variant).eval(), input_size=(12, 12))


def _autograd(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x)[:, target].sum(), x)
    return grad


def test_the_folded_network_gives_the_originals_values_and_gradients():
    model = _model()
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    before = snapshot(model.net)
    folded = fast_model(model, [], x)
    assert folded.net is not model.net
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.net.modules()) == 1  # only `pre`, unused here
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(folded(x), expected, atol=1e-5)
        assert (expected - expected.mean(0)).abs().max() > 1e-3  # alive: not one constant output
    ours = attribute(model, x, class_logit(2))
    assert torch.allclose(ours, _autograd(model.net, x, 2), atol=1e-5)
    assert_unchanged(before, model.net)


@pytest.mark.parametrize("variant", ["residual", "norm_first", "scaled"])
def test_no_fold_where_it_would_change_the_values(variant):
    model = _model(variant)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    folded = fast_model(model, [], x)
    if variant == "norm_first":  # the pairs after it still fold; `pre` (before a conv) stays
        assert folded.net is not model.net and isinstance(folded.net.pre, nn.BatchNorm2d)
        assert isinstance(folded.net.norm1, nn.Identity)
    else:  # the first pair is refused, or the copy's output differs and the original runs
        assert folded.net is model.net or isinstance(folded.net.norm1, nn.BatchNorm2d)
    assert torch.allclose(attribute(model, x, class_logit(1)), _autograd(model.net, x, 1), atol=1e-5)


def test_reading_a_folded_convolution_runs_the_original_and_its_norm_is_kept():
    model = _model()
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    assert fast_model(model, ["depthwise@1"], x).net is model.net
    folded = fast_model(model, ["norm2@1"], x)
    assert folded.net is not model.net
    with torch.no_grad():
        theirs = capture(model, model.net, x, ["norm2@1"])["norm2@1"]
        ours = capture(folded, folded.net, x, ["norm2@1"])["norm2@1"]
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_changed_weights_are_folded_again():
    model = _model()
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    first = fast_model(model, [], x).net
    assert fast_model(model, [], x).net is first  # cached
    with torch.no_grad():
        model.net.norm2.running_mean.add_(1.0)
    assert fast_model(model, [], x).net is not first
    assert torch.allclose(attribute(model, x, class_logit(0)), _autograd(model.net, x, 0), atol=1e-5)


def test_a_large_image_is_checked_at_the_input_size_and_then_served():
    seen = []

    class Recording(cs.Model):  # not a hook: a hooked network is not folded
        def normalize(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().normalize(x)
    model = Recording(_Net().eval(), input_size=(12, 12))
    x = torch.rand(1, 3, 60, 60, generator=torch.Generator().manual_seed(6))
    folded = fast_model(model, [], x)
    assert seen and all(shape == model.input_size for shape in seen)  # the checks never ran at 60 x 60
    assert folded.net is not model.net
    assert torch.allclose(attribute(model, x, class_logit(1)), _autograd(model.net, x, 1), atol=1e-5)


def test_a_fixed_size_head_is_checked_at_the_image_size_and_a_refused_image_is_not_remembered():
    """A network whose linear head needs 16 x 16 images refuses the 12 x 12 input size the Model
    claims: the check falls back to the image itself. An image it refuses at every size leaves the
    original to report the fault, and does not stop a later good image from being folded."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False),
                            _trained_norm(4, torch.Generator().manual_seed(9)),
                            nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)).eval()
    model = cs.Model(net, input_size=(12, 12))
    assert fast_model(model, [], torch.rand(1, 3, 20, 20)).net is net
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    folded = fast_model(model, [], x)
    assert folded.net is not net and isinstance(folded.net[1], nn.Identity)
    assert torch.allclose(attribute(model, x, class_logit(2)), _autograd(net, x, 2), atol=1e-5)


def test_a_network_with_the_users_hooks_runs_as_it_is():
    model = _model()
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(10))
    assert fast_model(model, [], x).net is not model.net  # folded (and cached) before the hook
    seen = []
    handle = model.net.norm1.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        assert fast_model(model, [], x).net is model.net
        assert torch.allclose(attribute(model, x, class_logit(1)), _autograd(model.net, x, 1), atol=1e-5)
    finally:
        handle.remove()
    assert seen, "the user's hook on a batch norm the copy removes must fire"
    assert fast_model(model, [], x).net is not model.net


def test_a_network_that_cannot_be_copied_runs_as_it_is():
    import threading

    model = _model()
    model.net.lock = threading.Lock()  # deepcopy refuses locks
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    assert fast_model(model, [], x).net is model.net
    assert torch.allclose(attribute(model, x, class_logit(3)), _autograd(model.net, x, 3), atol=1e-5)


def test_a_copy_made_under_inference_mode_serves_autograd_later():
    model = _model()
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        folded = fast_model(model, [], x)
        assert folded.net is not model.net
    assert torch.allclose(attribute(model, x, class_logit(1)), _autograd(model.net, x, 1), atol=1e-5)


class _PadConv(nn.Conv2d):
    """A convolution that zero-pads its input itself first, as TensorFlow ports do."""

    def __init__(self, *args, pad, **kwargs):
        super().__init__(*args, **kwargs)
        self.static_padding = nn.ZeroPad2d(pad)

    def forward(self, x):
        return super().forward(self.static_padding(x))


class _Padded(nn.Module):
    """pad -> conv (siblings), a conv with its own pad on top of its padding, one with an asymmetric pad."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.pad, self.conv1 = nn.ZeroPad2d(1), nn.Conv2d(3, 4, 3)
            self.conv2 = _PadConv(4, 4, 3, pad=2, padding=1)
            self.conv3 = _PadConv(4, 4, 3, stride=2, pad=(0, 1, 0, 1))
            self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(self.pad(x)))))
        return self.head(self.conv3(h).mean((2, 3)))


def test_symmetric_zero_pads_become_the_convolutions_padding():
    model = cs.Model(_Padded().eval(), input_size=(11, 11))
    x = torch.rand(2, 3, 11, 11, generator=torch.Generator().manual_seed(7))
    folded = fast_model(model, [], x).net
    assert isinstance(folded.pad, nn.Identity) and folded.conv1.padding == (1, 1)
    assert isinstance(folded.conv2.static_padding, nn.Identity) and folded.conv2.padding == (3, 3)
    assert isinstance(folded.conv3.static_padding, nn.ZeroPad2d) and folded.conv3.padding == (0, 0)
    assert torch.allclose(attribute(model, x, class_logit(1)), _autograd(model.net, x, 1), atol=1e-6)
    assert fast_model(model, ["pad"], x).net is model.net
