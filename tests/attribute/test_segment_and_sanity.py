"""Saliency-seeded GrabCut, the randomized copies of the randomization checks, rank correlation."""

import pytest
import torch

import convscope as cs
from convscope.attribute.segment import segment
from convscope.core.metrics import spearman
from convscope.evaluate.randomization import parameterized_layers, randomized


def test_segment_finds_the_cup(lite0):
    pytest.importorskip("cv2")
    x = cs.sample_image("coffee", size=224)
    result = segment(lite0, x, 967)
    mask = result.masks[0]
    assert 0.05 < mask.float().mean() < 0.9
    # the mask holds the salient pixels: mean saliency inside well above outside
    assert result.saliency[0][mask].mean() > 2 * result.saliency[0][~mask].mean()


def test_randomized_copy_changes_only_the_named_layers_and_not_the_model(lite0):
    top = parameterized_layers(lite0.net)[-3:]
    assert top[-1] == "_fc"
    random = randomized(lite0, top)
    assert not torch.equal(random.net._fc.weight, lite0.net._fc.weight)
    assert torch.equal(random.net._conv_stem.weight, lite0.net._conv_stem.weight)
    assert random.net is not lite0.net


def test_spearman_against_scipy():
    scipy = pytest.importorskip("scipy.stats")
    a, b = torch.rand(50), torch.rand(50)
    b[:10] = b[10]  # ties
    assert spearman(a, b) == pytest.approx(scipy.spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-9)
