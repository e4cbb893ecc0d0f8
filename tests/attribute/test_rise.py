"""RISE against a direct computation over the same masks, and its masks' properties."""

import pytest
import torch

import convscope as cs
from convscope.attribute.rise import rise, rise_masks
from convscope.core.objectives import class_logit
from tests.evaluate.test_map_metrics import small_net


def test_rise_equals_the_mask_weighted_mean_computed_one_by_one():
    net, x, classes = small_net(), torch.rand(2, 3, 14, 14), torch.tensor([1, 4])
    result = rise(net, x, class_logit(classes), masks=20, cells=3, keep=0.4, seed=2, chunk_size=6)
    masks = rise_masks(20, (14, 14), cells=3, keep=0.4, seed=2)
    expected = torch.zeros(2, 14, 14)
    with torch.no_grad():
        for b in range(2):
            scores = [float(net((x[b] * mask)[None])[0, classes[b]]) for mask in masks]
            mean = sum(scores) / len(scores)
            for value, mask in zip(scores, masks):
                expected[b] += (value - mean) * mask[0]
    torch.testing.assert_close(result, expected / (20 * 0.4), atol=1e-5, rtol=1e-4)


def test_masks_do_not_depend_on_the_chunks_and_keep_about_p_of_the_image():
    whole = rise_masks(300, (21, 21), cells=7, keep=0.5, seed=1)
    parts = torch.cat([rise_masks(300, (21, 21), cells=7, keep=0.5, seed=1, start=s, stop=s + 70)
                       for s in range(0, 300, 70)])
    assert torch.equal(whole, parts)
    assert whole.shape == (300, 1, 21, 21) and 0 <= whole.min() and whole.max() <= 1 + 1e-6
    assert float(whole.mean()) == pytest.approx(0.5, abs=0.03)


def test_rise_refuses_bad_settings_in_one_line():
    with pytest.raises(cs.ConvscopeError, match="0 < keep <= 1"):
        rise(small_net(), torch.rand(1, 3, 8, 8), class_logit(0), keep=0.0)
