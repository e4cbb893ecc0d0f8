"""The render loop: determinism, range, early stop, no upsampling, interruption, model left alone."""

import pytest
import torch
from torch import nn

from convscope.core.objectives import channel, class_logit
from convscope.errors import ConvscopeError
from convscope.optimize.params import make_param
from convscope.optimize.priors import yosinski_priors
from convscope.optimize.render import render
from convscope.optimize.visualize import visualize, visualize_channel
from tests.conftest import assert_unchanged, snapshot


def _small_visualization(model, seed):
    return visualize_channel(model, "_blocks.4", [1, 2], steps=6, size=48, seed=seed).images


def test_same_seed_same_image_bit_for_bit(lite0):
    first, second = _small_visualization(lite0, 7), _small_visualization(lite0, 7)
    assert torch.equal(first, second)
    assert not torch.equal(first, _small_visualization(lite0, 8))


@pytest.mark.parametrize("recipe", ["fourier", "simonyan", "yosinski"])
def test_pixels_in_range_and_model_unchanged(lite0, recipe):
    before = snapshot(lite0.net)
    result = visualize(lite0, class_logit(1), recipe=recipe, steps=4, size=40)
    assert result.images.shape == (1, 3, 40, 40)
    assert 0 <= result.images.min() and result.images.max() <= 1
    assert result.scores.shape == (4, 1)
    assert_unchanged(before, lite0.net)


class _Counting(nn.Module):
    """conv -> relu -> conv -> (a layer that records it ran and the input sizes it saw)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():  # the same weights in every run
            torch.manual_seed(seed)
            self.conv1, self.relu, self.conv2 = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)
            self.head = nn.Linear(4, 2)
        self.seen, self.head_calls = [], 0

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        features = self.conv2(self.relu(self.conv1(x)))
        self.head_calls += 1
        return self.head(features.mean((2, 3)))


def _checked(net: _Counting, size: tuple[int, int]) -> _Counting:
    """``net`` once the fast paths' self-check has judged it at ``size`` (its forward passes run the
    whole network, once per network and size), with its counts started afresh."""
    render(net, channel("conv1", 0), make_param("pixel", 1, size), steps=1)
    net.seen, net.head_calls = [], 0
    return net


def test_forward_stops_at_deepest_layer_and_small_images_are_not_upsampled():
    net = _checked(_Counting(), (20, 20))
    param = make_param("pixel", 1, (20, 20))
    result = render(net, channel("conv1", 0), param, steps=3)
    assert net.head_calls == 0 and net.seen == [(20, 20)] * 4  # a checking forward, then 3 steps
    assert result.scores[-1, 0] > result.scores[0, 0]
    render(net, channel("conv1", 0), make_param("pixel", 1, (20, 20)), steps=1, input_size=(32, 32))
    assert net.seen[-1] == (32, 32)


def test_a_bad_objective_fails_before_the_progress_bar_starts(capsys):
    with pytest.raises(ConvscopeError, match="index 9 is out of range; accepted: 0..3"):
        render(_Counting(), channel("conv1", 9), make_param("pixel", 1, (20, 20)), steps=3, progress=True)
    assert capsys.readouterr().err == ""


def test_ctrl_c_returns_the_current_image():
    net = _Counting()

    def interrupt(step, images):
        if step == 3:
            raise KeyboardInterrupt

    result = render(net, channel("conv2", 1), make_param("pixel", 2, (16, 16)), steps=50, callback=interrupt, every=1)
    assert result.interrupted and len(result.scores) == 3 and result.images.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("seed", range(5))
def test_lbfgs_and_priors_raise_the_objective(seed):
    net = _Counting(seed)

    def start():  # seeded: the global generator's state depends on the tests run before
        return make_param("pixel", 1, (16, 16), generator=torch.Generator().manual_seed(seed))
    lbfgs = render(net, channel("conv2", 1), start(), steps=10, optimizer="lbfgs", lr=0.1)
    assert lbfgs.scores[-1, 0] > lbfgs.scores[0, 0]
    plain = render(net, channel("conv2", 1), start(), steps=10, optimizer="sgd", lr=1.0)
    with_priors = render(net, channel("conv2", 1), start(), steps=10, optimizer="sgd",
                         lr=1.0, priors=yosinski_priors(decay=0.001, norm_percentile=0, contribution_percentile=10))
    assert with_priors.scores[-1, 0] > with_priors.scores[0, 0]
    assert not torch.equal(with_priors.images, plain.images)  # the priors did act


def test_bad_settings_are_refused():
    net = _Counting()
    with pytest.raises(ConvscopeError, match="adam, sgd, lbfgs"):
        render(net, channel("conv1", 0), make_param("pixel", 1, (8, 8)), optimizer="rmsprop")
    with pytest.raises(ConvscopeError, match="pixel parametrization"):
        render(net, channel("conv1", 0), make_param("fourier", 1, (8, 8)), priors=yosinski_priors())


def test_octave_schedule_grows_to_the_final_size():
    from convscope.optimize.octaves import octave_sizes, render_octaves

    assert octave_sizes((100, 70), 3, scale=2.0) == [(25, 18), (50, 35), (100, 70)]
    net = _Counting()
    for size in ((10, 10), (20, 20), (40, 40)):
        _checked(net, size)
    result = render_octaves(net, channel("conv2", 1), "pixel", 1, (40, 40), octaves=3, scale=2.0, steps=9)
    assert net.seen == [(10, 10)] * 4 + [(20, 20)] * 4 + [(40, 40)] * 4  # each octave: a check, 3 steps
    assert result.images.shape == (1, 3, 40, 40) and result.scores.shape == (9, 1)
    assert result.scores[-1, 0] > result.scores[0, 0]
