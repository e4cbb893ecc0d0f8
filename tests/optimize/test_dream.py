"""DeepDream: it boosts the layer, keeps the size, tiles exactly, and bounds memory on big images."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from convscope.core.forward import score
from convscope.core.objectives import layer_norm
from convscope.optimize.dream import _spans, dream, tiled
from tests.conftest import assert_unchanged, snapshot


def test_dream_raises_the_layer_fivefold_and_keeps_the_size(lite0):
    import convscope as cs
    photo = F.interpolate(cs.sample_image("cat"), size=(240, 320), mode="bilinear", antialias=True)
    before = snapshot(lite0.net)
    result = dream(lite0, photo, "_blocks.5", steps=40, step_size=0.03, seed=1)
    assert_unchanged(before, lite0.net)
    assert result.images.shape == photo.shape
    assert 0 <= result.images.min() and result.images.max() <= 1
    with torch.no_grad():
        start, end = (score(lite0, x, layer_norm("_blocks.5")).item() for x in (photo, result.images))
    assert end >= 5 * start, (start, end)
    again = dream(lite0, photo, "_blocks.5", steps=40, step_size=0.03, seed=1)
    assert torch.equal(result.images, again.images)  # same seed, same image


def test_channel_dream_raises_that_channel(lite0, cat):
    small = F.interpolate(cat, size=(128, 128), mode="bilinear")
    result = dream(lite0, small, "_blocks.9", channel=5, octaves=2, steps=10)
    with torch.no_grad():
        start, end = (score(lite0, x, layer_norm("_blocks.9", 5)).item() for x in (small, result.images))
    assert end >= 5 * start, (start, end)


@pytest.mark.parametrize("length,tile", [(10, 4), (2048, 512), (7, 7), (513, 512)])
def test_spans_cover_the_length_once(length, tile):
    spans = _spans(length, tile)
    covered = torch.cat([torch.arange(length)[span] for span in spans])
    assert torch.equal(covered, torch.arange(length))
    assert max(span.stop - span.start for span in spans) <= tile


def test_tiled_equals_whole_for_a_pointwise_map():
    x = torch.randn(2, 3, 37, 50)
    out, values = tiled(x, 16, lambda piece: (piece.pow(2), piece.flatten(1).mean(1)))
    assert torch.equal(out, x.pow(2))
    assert values.shape == (2,)


def test_tiled_2048_dream_stays_under_4_gib():
    """Peak resident memory of a whole process dreaming a 2048 x 2048 image in 512-pixel tiles.

    Read as VmHWM, which starts afresh at exec: ``ru_maxrss`` would also count the pages of the
    pytest process the child was forked from (several GiB late in a full run)."""
    program = (
        "import torch, convscope as cs\n"
        "from convscope.optimize.dream import dream\n"
        "x = torch.rand(1, 3, 2048, 2048)\n"
        "r = dream(cs.load_model(device='cpu'), x, '_blocks.9', octaves=2, steps=1, tile=512)\n"
        "assert r.images.shape == x.shape\n"
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    peak_gib = int(done.stdout.split()[-1]) / 2**20  # VmHWM is in KiB
    assert peak_gib < 4, peak_gib
