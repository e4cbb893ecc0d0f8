"""Saliency-seeded GrabCut and the randomization sanity check."""

import pytest
import torch

import convscope as cs
from convscope.attribute.sanity import randomized_top, sanity_check
from convscope.attribute.segment import segment
from convscope.core.metrics import spearman


def test_segment_finds_the_cup(lite0):
    pytest.importorskip("cv2")
    x = cs.sample_image("coffee", size=224)
    result = segment(lite0, x, 967)
    mask = result.masks[0]
    assert 0.05 < mask.float().mean() < 0.9
    # the mask holds the salient pixels: mean saliency inside well above outside
    assert result.saliency[0][mask].mean() > 2 * result.saliency[0][~mask].mean()


def test_randomized_copy_changes_only_top_layers(lite0):
    random = randomized_top(lite0, 3)
    assert not torch.equal(random.net._fc.weight, lite0.net._fc.weight)
    assert torch.equal(random.net._conv_stem.weight, lite0.net._conv_stem.weight)


def test_sanity_check_falls_when_weights_are_destroyed(digits):
    x = torch.rand(2, 1, 8, 8)
    assert sanity_check(digits, x, 3, method="gradient", layers=0) == pytest.approx(1.0)  # nothing randomized
    assert sanity_check(digits, x, 3, method="gradient", layers=4) < 0.9


def test_spearman_against_scipy():
    scipy = pytest.importorskip("scipy.stats")
    a, b = torch.rand(50), torch.rand(50)
    b[:10] = b[10]  # ties
    assert spearman(a, b) == pytest.approx(scipy.spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-9)
