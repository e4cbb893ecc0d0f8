"""Occlusion: incremental inference equals brute force; closed form on a linear model."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convscope as cs
from convscope.attribute.occlusion import PRECISIONS, _disagreement, _fill_in, occlusion
from convscope.core.incremental import IncrementalInference, Unreplayable, Window
from convscope.core.metrics import ssim
from tests.conftest import assert_unchanged, snapshot


class Branchy(nn.Module):
    """Strided, padded, dilated, depthwise convs, a residual sum, max pool and a dense head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8),
                                  nn.ReLU6())
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8), nn.ReLU(),
                                    nn.Conv2d(8, 8, 1))
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.branch(x)
        return self.head(self.pool(x))


def brute(net, x, top, left, values):
    copies = x.repeat(len(top), 1, 1, 1)
    p = values.shape[-1]
    for i, (t, lft) in enumerate(zip(top.tolist(), left.tolist())):
        copies[i, :, t:t + p, lft:lft + p] = values[i]
    return net(copies)


@pytest.mark.parametrize("channels_last, dtype", [(False, torch.float32), (True, torch.float32),
                                                   (True, torch.float16), (True, torch.bfloat16)])
def test_incremental_equals_brute_force_on_a_branchy_net(channels_last, dtype):
    """Exact in float32; in half precision within a few roundings (of values of order one) per layer."""
    net = Branchy().eval()
    x = torch.rand(1, 3, 23, 23)
    top, left = torch.tensor([0, 5, 17, 11]), torch.tensor([3, 0, 17, 9])
    values = torch.rand(4, 3, 6, 6)
    with torch.no_grad():
        got = IncrementalInference(net, x, channels_last=channels_last, dtype=dtype)(top, left, values)
        reference = brute(net, x, top, left, values)
    assert got.dtype == dtype
    tolerance = 1e-5 if dtype == torch.float32 else 8 * torch.finfo(dtype).eps * float(reference.abs().max())
    torch.testing.assert_close(got.float(), reference, rtol=0, atol=tolerance)


def test_without_a_dtype_each_tensor_keeps_its_traced_type():
    """A float64 constant inside a float32 model stays float64, as in the plain forward."""
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.register_buffer("scale", torch.tensor([1 / 3], dtype=torch.float64))

        def forward(self, x):
            return (self.conv(x).mean((2, 3)) * self.scale).double()
    net = Scaled().eval()
    x, top, left, values = torch.rand(1, 1, 9, 9), torch.tensor([2, 4]), torch.tensor([0, 5]), torch.rand(2, 1, 3, 3)
    with torch.no_grad():
        got = IncrementalInference(net, x)(top, left, values)
        expected = brute(net, x, top, left, values)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


class Activations(nn.Module):
    """Each activation the engine folds into the convolution before it, then one that must stay apart
    (the convolution's output is also read by the sum)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(8))
        self.activations = [F.relu, F.relu6, lambda t: t.clamp(-0.1, 0.2), lambda t: F.leaky_relu(t, 0.3), F.silu,
                            F.hardswish, torch.sigmoid]

    def forward(self, x):
        for conv, activation in zip(self.convs, self.activations):
            x = activation(conv(x))
        y = self.convs[-1](x)
        return (torch.relu(y) + y).mean((2, 3))


def test_activations_folded_into_convolutions_stay_exact():
    net = Activations().eval()
    x, top, left, values = torch.rand(1, 3, 16, 16), torch.tensor([0, 6, 11]), torch.tensor([9, 2, 11]), \
        torch.rand(3, 3, 5, 5)
    with torch.no_grad():
        engine = IncrementalInference(net, x)
        got = engine(top, left, values)
        expected = brute(net, x, top, left, values)
    assert sum(node.then is not None for node in engine.nodes) == 7  # all but the last convolution's
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_padding_that_also_pads_channels_stays_exact():
    """Only spatial padding shifts the window; padding channels as well changes the tensor's depth."""
    class ChannelPad(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.first, self.second = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(5, 4, 3)

        def forward(self, x):
            return self.second(F.pad(self.first(x), (1, 0, 0, 1, 1, 1))).mean((2, 3))
    net = ChannelPad().eval()
    x, top, left, values = torch.rand(1, 2, 12, 12), torch.tensor([0, 6]), torch.tensor([4, 9]), torch.rand(2, 2, 3, 3)
    with torch.no_grad():
        got = IncrementalInference(net, x)(top, left, values)
        expected = brute(net, x, top, left, values)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


class Padded(nn.Module):
    """Convolutions whose windows soon cover the whole tensor: symmetric and dilated padding, then
    TensorFlow-style asymmetric zero padding with stride 2, a stride-2 padding whose last row is not
    read, and a padding of 0.5 (not zero)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.convs = nn.ModuleList([nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4),
                                    nn.Conv2d(4, 4, 5, stride=2), nn.Conv2d(4, 4, 5, stride=2, padding=2),
                                    nn.Conv2d(4, 4, 3)])

    def forward(self, x):
        x = self.convs[1](torch.relu(self.convs[0](x)))
        x = self.convs[3](self.convs[2](F.pad(x, (1, 2, 1, 2))))
        return self.convs[4](F.pad(x, (1, 1, 1, 1), value=0.5)).mean((2, 3))


def test_windows_covering_the_tensor_are_padded_by_the_convolution_and_stay_exact(monkeypatch):
    """Where a window covers its tensor, the convolution pads it instead of gathering from the cache."""
    net = Padded().eval()
    x, top, left, values = torch.rand(1, 3, 12, 12), torch.tensor([0, 4, 2]), torch.tensor([4, 0, 2]), \
        torch.rand(3, 3, 8, 8)
    padded = []
    original = Window.padding
    monkeypatch.setattr(Window, "padding", lambda *args: padded.append(original(*args)) or padded[-1])
    with torch.no_grad():
        got = IncrementalInference(net, x, channels_last=True)(top, left, values)
        expected = brute(net, x, top, left, values)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert padded[0] is None  # the patches are at different places
    assert (1, 2, 1, 2) in padded  # asymmetric: a padded copy
    assert (2, 1, 2, 1) in padded  # padded by the convolution, which does not read its last padding row
    assert padded[-1] is None  # the padding of 0.5 is gathered from the cache


class Residual(nn.Module):
    """A 3x3 convolution added to its input, then a 1x1 convolution and a spatial mean."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 3, 1)

    def forward(self, x):
        return self.second(self.first(x) + x).mean((2, 3))


@pytest.mark.parametrize("patch, first, second", [(2, (6, 8), (6, 8)), (3, (6, 8), (6, 8))])
def test_thresholded_windows_equal_a_hand_windowed_forward(patch, first, second):
    """``limit`` 0.16 caps each 12-wide layer's window at 2 rows and columns, centred on the reach:
    a patch of 2 at (6, 6) reaches 5..8 through the 3x3 convolution, kept as 6..7; a patch of 3
    reaches 5..9, kept as 6..7, and the sum's window (6..8, with the input's) is cropped to 6..7 by
    the 1x1 convolution. Reference: the dense forward with each convolution's output replaced by
    the unoccluded one outside the hand-computed window (Krypton's projective-field thresholding)."""
    net = Residual().eval()
    x = torch.rand(1, 2, 12, 12)
    top = left = torch.tensor([6])
    values = torch.rand(1, 2, patch, patch)
    copy = x.clone()
    copy[:, :, 6:6 + patch, 6:6 + patch] = values

    def windowed(conv, changed, unchanged, window):
        out = conv(unchanged)
        inside = (..., slice(*window), slice(*window))
        out[inside] = conv(changed)[inside]
        return out
    with torch.no_grad():
        got = IncrementalInference(net, x, limit=0.16)(top, left, values)
        summed = windowed(net.first, copy, x, first) + copy
        expected = windowed(net.second, summed, net.first(x) + x, second).mean((2, 3))
        exact = net(copy)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(got, exact, atol=1e-3)  # the cap does cut the windows


@pytest.mark.filterwarnings("ignore:this CPU has no oneDNN")  # the slow kernels are fine for 8x8 images
def test_half_precision_overflow_is_refused():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with torch.no_grad():
        net[1].weight.fill_(2000.0)  # logits about 10^5: beyond float16's 65504
    with pytest.raises(cs.ConvscopeError, match="overflowed"):
        occlusion(net, torch.rand(1, 3, 8, 8), 0, patch=4, stride=4, mode="fast", precision="float16")


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_half_precision_on_cpu_warns_where_convolutions_fall_back_to_slow_kernels(precision):
    """Whether oneDNN runs a half-precision convolution here (seen by the profiler) decides the warning."""
    dtype = PRECISIONS[precision]
    x = torch.rand(8, 16, 14, 14).to(dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.rand(16, 16, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.profiler.profile() as profile:
        F.conv2d(x, weight)
    onednn = any(event.key == "aten::mkldnn_convolution" for event in profile.key_averages())
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        occlusion(net, torch.rand(1, 3, 8, 8), 0, patch=4, stride=4, mode="fast", precision=precision)
    assert any("slow reference kernels" in str(w.message) for w in caught) == (not onednn)


def test_exact_mode_equals_brute_force_on_default_model(lite0, cat):
    rows = dict(patch=32, stride=48)  # a coarse grid keeps the test quick; the engine is the same
    exact = occlusion(lite0, cat, 285, mode="exact", **rows)
    reference = occlusion(lite0, cat, 285, mode="brute", **rows)
    assert (exact.probabilities - reference.probabilities).abs().max() < 1e-4
    assert exact.probabilities.shape == (1, 5, 5)  # offsets 0, 48, 96, 144 and the flush 192


def test_linear_model_closed_form():
    """For softmax over [w.x, 0] the occluded logit is w.x - w_patch.(x_patch - fill)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2, bias=False))
    with torch.no_grad():
        net[1].weight[1] = 0
    x = torch.rand(1, 3, 8, 8)
    result = occlusion(net, x, 0, patch=4, stride=4, fill="zero")
    w = net[1].weight[0].view(3, 8, 8)
    for i, t in enumerate((0, 4)):
        for j, lft in enumerate((0, 4)):
            logit = (w * x[0]).sum() - (w * x[0])[:, t:t + 4, lft:lft + 4].sum()
            assert torch.isclose(result.probabilities[0, i, j], torch.sigmoid(logit), atol=1e-6)


def test_chunk_size_and_batch_do_not_change_results(digits):
    x = torch.rand(2, 1, 8, 8)
    maps = [occlusion(digits, x, torch.tensor([3, 5]), patch=3, stride=2, chunk_size=c).probabilities
            for c in (1, 2, 3)]
    torch.testing.assert_close(maps[0], maps[1])
    torch.testing.assert_close(maps[0], maps[2])
    single = occlusion(digits, x[1:], 5, patch=3, stride=2).probabilities
    torch.testing.assert_close(maps[0][1:], single)


@pytest.mark.parametrize("fill", ["zero", "grey", "mean", "blur"])
def test_fills_and_fast_mode_run_and_leave_the_model_alone(digits, fill):
    before = snapshot(digits.net)
    x = torch.rand(1, 1, 8, 8)
    result = occlusion(digits, x, 2, patch=3, stride=1, fill=fill, mode="fast")
    assert result.attribution.shape == (1, 8, 8) and torch.isfinite(result.attribution).all()
    exact = occlusion(digits, x, 2, patch=3, stride=1, fill=fill)
    known = result.probabilities[0, ::2, ::2]          # the coarse pass is exact
    torch.testing.assert_close(known, exact.probabilities[0, ::2, ::2], rtol=0, atol=1e-5)
    assert_unchanged(before, digits.net)


def test_full_drill_down_equals_exact_and_more_drill_gets_closer(digits):
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    exact = occlusion(digits, x, 3, patch=2, stride=1).probabilities
    errors = []
    for drill in (0.0, 0.3, 1.0):
        fast = occlusion(digits, x, 3, patch=2, stride=1, mode="fast", drill=drill).probabilities
        errors.append(float((fast - exact).abs().sum()))
    assert errors[2] < 1e-4
    assert errors[0] > errors[1] > errors[2]


def test_drill_down_computes_the_cell_centres_first(digits):
    """7x7 positions: a 4x4 coarse grid and 9 cell centres make a checkerboard; with a budget of exactly
    the centres, every checkerboard value is exact and each other one is the mean of its four (or,
    on the border, three) exact neighbours."""
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    exact = occlusion(digits, x, 3, patch=2, stride=1).probabilities[0]
    fast = occlusion(digits, x, 3, patch=2, stride=1, mode="fast", drill=9.5 / 49).probabilities[0]
    i = torch.arange(7)
    checkerboard = (i[:, None] + i[None, :]) % 2 == 0
    torch.testing.assert_close(fast[checkerboard], exact[checkerboard], rtol=0, atol=1e-5)
    padded = F.pad(exact, (1, 1, 1, 1))
    count = F.pad(torch.ones(7, 7), (1, 1, 1, 1))
    four = lambda t: t[:-2, 1:-1] + t[2:, 1:-1] + t[1:-1, :-2] + t[1:-1, 2:]  # noqa: E731
    expected = four(padded) / four(count)
    torch.testing.assert_close(fast[~checkerboard], expected[~checkerboard], rtol=0, atol=1e-5)


def test_fill_in_is_the_mean_of_the_known_neighbours():
    values = torch.tensor([[1.0, 0.0, 5.0], [0.0, 0.0, 0.0], [2.0, 0.0, 4.0]])
    known = torch.zeros(3, 3, dtype=torch.bool)
    known[::2, ::2] = True
    filled = _fill_in(values, known)
    assert filled[1, 1] == (1 + 5 + 2 + 4) / 4      # no side neighbour known: the four corners
    assert filled[0, 1] == 3.0 and filled[1, 0] == 1.5 and filled[2, 1] == 3.0 and filled[1, 2] == 4.5
    values[1, 1], known[1, 1] = 9.0, True
    assert _fill_in(values, known)[0, 1] == (1 + 5 + 9) / 3
    assert torch.equal(_fill_in(values, known)[known], values[known])


@pytest.mark.parametrize("name", ["cat", "coffee", "astronaut", "rocket"])
def test_fast_mode_reaches_ssim_0_9_on_sample_photos(lite0, name):
    """At the default drill the fast map is within SSIM 0.9 of the exact one on every sample photo
    (measured 0.92-0.97); broken filling-in or drill-down picks fall far below."""
    x = cs.sample_image(name, size=lite0.input_size)
    with torch.no_grad():
        target = int(lite0(x).argmax())
    exact = occlusion(lite0, x, target, mode="exact")
    fast = occlusion(lite0, x, target, mode="fast")
    assert ssim(fast.attribution[0], exact.attribution[0]) >= 0.9
    torch.testing.assert_close(fast.probabilities[0, ::2, ::2], exact.probabilities[0, ::2, ::2], rtol=0, atol=1e-4)


@pytest.mark.parametrize("mode, drill", [("exact", 0.2), ("fast", 0.2), ("fast", 0.22), ("fast", 1.0), ("brute", 0.2)])
def test_callback_counts_the_copies_and_can_stop_the_work(digits, mode, drill):
    x = torch.rand(2, 1, 8, 8)
    reported = []
    occlusion(digits, x, 3, patch=2, stride=1, mode=mode, drill=drill, chunk_size=5, callback=reported.append)
    positions, coarse, centres = 7 * 7, 4 * 4, 3 * 3  # offsets 0-6; every other one: 0, 2, 4, 6
    drilled = min(int(drill * positions), positions - coarse)
    rounds = [positions] if mode != "fast" else [coarse, min(drilled, centres), drilled - min(drilled, centres)]
    batches = sum(-(-count // 5) for count in rounds)  # each round in batches of 5
    assert len(reported) == 2 * batches
    assert reported == sorted(reported) and reported[-1] == 1.0 and reported[batches - 1] == 0.5

    def stop(fraction):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        occlusion(digits, x, 3, patch=2, stride=1, mode=mode, callback=stop)


def test_disagreement_is_the_range_of_known_neighbours():
    values = torch.tensor([[1.0, 0.0, 5.0], [0.0, 0.0, 0.0], [2.0, 0.0, 4.0]])
    known = torch.zeros(3, 3, dtype=torch.bool)
    known[::2, ::2] = True
    doubt = _disagreement(values, known)
    assert doubt[1, 1] == 5.0 - 1.0            # all four corners
    assert doubt[0, 1] == 5.0 - 1.0 and doubt[1, 0] == 2.0 - 1.0 and doubt[2, 1] == 4.0 - 2.0


def test_bad_arguments_are_refused(digits):
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(cs.ConvscopeError, match="unknown fill"):
        occlusion(digits, x, 0, fill="pink")
    with pytest.raises(cs.ConvscopeError, match="between 0 and 1"):
        occlusion(digits, x, 0, mode="fast", drill=1.5)
    with pytest.raises(cs.ConvscopeError, match="accepted: float32, float16, bfloat16"):
        occlusion(digits, x, 0, mode="fast", precision="double")
    with pytest.raises(cs.ConvscopeError, match="give it with mode fast"):
        occlusion(digits, x, 0, precision="float16")
    with pytest.raises(cs.ConvscopeError, match="at most the image side"):
        occlusion(digits, x, 0, patch=9)


class _BatchOfOneInTheTrace(nn.Module):
    """A group norm (its op carries the batch size) and a product with a constant of batch 1
    (learned tokens, attention biases): ops whose recorded arguments fit only one image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.tokens = nn.Parameter(torch.randn(1, 4, 8))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        a = self.norm(self.conv(x)).flatten(2)               # (B, 8, h*w)
        mixed = torch.bmm(self.tokens.expand(len(x), -1, -1), a)  # (B, 4, h*w); traced, the constant has batch 1
        return self.head(torch.cat([mixed.mean(2), mixed.amax(2)], 1))


def test_exact_occlusion_runs_ops_with_the_traces_batch_per_copy():
    torch.manual_seed(0)
    net = _BatchOfOneInTheTrace().eval()
    x = torch.rand(1, 3, 24, 24)
    exact = occlusion(net, x, 2, patch=8, stride=8).probabilities
    brute = occlusion(net, x, 2, patch=8, stride=8, mode="brute").probabilities
    torch.testing.assert_close(exact, brute, rtol=1e-4, atol=1e-6)
    assert float(brute.max() - brute.min()) > 1e-4


class _RowLSTM(nn.Module):
    """conv -> a bidirectional LSTM along each row (as Sequencer's BiLSTM2d does) -> head."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 8, 4, stride=4)
            self.rows = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
            self.head = nn.Linear(12, 5)

    def forward(self, x):
        maps = self.conv(x)                                      # (B, 8, h, w)
        b, c, h, w = maps.shape
        rows = maps.permute(0, 2, 3, 1).reshape(b * h, w, c)     # every row a sequence
        out, _ = self.rows(rows)
        return self.head(out.reshape(b, h * w, -1).mean(1))


def test_a_recurrent_layer_is_not_replayed_and_exact_occlusion_runs_brute_force():
    """The replay cannot batch an LSTM's hidden state (oneDNN then read past it: heap corruption
    and the process ended); exact occlusion says so and equals brute force."""
    model = cs.Model(_RowLSTM().eval(), input_size=(32, 32))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with pytest.raises(Unreplayable, match="recurrent"):
        IncrementalInference(model, x)
    exact = occlusion(model, x, 2, patch=8, stride=8)
    brute = occlusion(model, x, 2, patch=8, stride=8, mode="brute")
    assert torch.equal(exact.probabilities, brute.probabilities)
    assert len(exact.notes) == 1 and "recurrent layer" in exact.notes[0] and not brute.notes


def _torchvision():
    return pytest.importorskip("torchvision")


def test_swin_windows_padded_with_a_new_zeros_mask_are_replayed_exactly():
    """torchvision's Swin at 112 px pads its last stage to whole windows and builds the attention
    mask with ``x.new_zeros``: a constant of the trace, not a function of the image."""
    from torchvision.models.swin_transformer import SwinTransformer
    _torchvision()
    torch.manual_seed(0)
    net = SwinTransformer(patch_size=[4, 4], embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
                          window_size=[7, 7], num_classes=10).eval()
    model = cs.Model(net, input_size=(112, 112))
    x = cs.sample_image("cat", size=112)
    exact = occlusion(model, x, 3, patch=28, stride=28)
    brute = occlusion(model, x, 3, patch=28, stride=28, mode="brute")
    assert not exact.notes  # replayed, not brute force
    torch.testing.assert_close(exact.probabilities, brute.probabilities, rtol=1e-4, atol=1e-6)


def test_a_replay_that_differs_from_brute_force_is_not_used():
    """torchvision's MaxViT permutes the batch dimension inward before a view: the replay's copies
    would be mixed up. Its check against brute force on two copies catches it."""
    from torchvision.models.maxvit import MaxVit
    _torchvision()
    torch.manual_seed(0)
    net = MaxVit(input_size=(64, 64), stem_channels=8, partition_size=4, block_channels=[16, 32],
                 block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0, num_classes=10).eval()
    model = cs.Model(net, input_size=(64, 64))
    x = cs.sample_image("cat", size=64)
    engine = IncrementalInference(model, x)
    top, left = torch.tensor([0, 24]), torch.tensor([0, 24])
    values = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    pasted = x.repeat(2, 1, 1, 1)
    pasted[0, :, :16, :16], pasted[1, :, 24:40, 24:40] = values
    with torch.no_grad():
        replayed, truth = engine(top, left, values), model(pasted)
    wrong = (replayed - truth).norm() > 1e-3 * truth.norm()
    exact = occlusion(model, x, 3, patch=16, stride=16)
    brute = occlusion(model, x, 3, patch=16, stride=16, mode="brute")
    torch.testing.assert_close(exact.probabilities, brute.probabilities, rtol=1e-4, atol=1e-6)
    assert wrong and len(exact.notes) == 1 and "from brute force" in exact.notes[0]  # caught, said, and exact
