"""KernelSHAP and LIME on superpixels: exact Shapley values by brute force, and exact recovery of an
additive model's contributions."""

import itertools
import math

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.attribute.surrogate import kernel_shap, lime, superpixels
from convscope.core.objectives import class_logit
from convscope.core.smoothing import gaussian_blur
from tests.evaluate.test_map_metrics import small_net


def quadrants(size: int = 12) -> torch.Tensor:
    """Four superpixels: the image's quadrants."""
    half = size // 2
    label = torch.zeros(size, size, dtype=torch.long)
    label[:half, half:], label[half:, :half], label[half:, half:] = 1, 2, 3
    return label


def test_kernel_shap_enumerating_every_coalition_gives_the_exact_shapley_values():
    net, x = small_net(), torch.rand(1, 3, 12, 12)
    label = quadrants()
    ours = kernel_shap(net, x, class_logit(3), labels=label[None], samples=100)
    fill = gaussian_blur(x, sigma=12 / 20)

    def value(coalition) -> float:
        keep = torch.tensor(coalition, dtype=torch.float32)[label]
        with torch.no_grad():
            return float(net(keep * x + (1 - keep) * fill)[0, 3])
    for feature in range(4):
        others = [f for f in range(4) if f != feature]
        shapley = 0.0
        for size in range(4):
            for subset in itertools.combinations(others, size):
                with_it = [1 if f in subset or f == feature else 0 for f in range(4)]
                without = [1 if f in subset else 0 for f in range(4)]
                shapley += math.factorial(size) * math.factorial(3 - size) / math.factorial(4) * (
                    value(with_it) - value(without))
        assert float(ours[0][label == feature][0]) == pytest.approx(shapley, abs=1e-4)


def linear_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)).eval()


@pytest.mark.parametrize("method", ["kernel-shap", "lime"])
def test_sampled_surrogates_recover_an_additive_models_contributions(method):
    net, x = linear_net(), torch.rand(1, 3, 16, 16)
    rows, cols = torch.meshgrid(torch.arange(16) // 4, torch.arange(16) // 4, indexing="ij")
    label = rows * 4 + cols                  # 16 blocks: too many coalitions to enumerate in 300 samples
    count = 16
    objective = class_logit(1)
    maps = (kernel_shap(net, x, objective, labels=label[None], samples=300) if method == "kernel-shap" else
            lime(net, x, objective, labels=label[None], samples=300, ridge=0.0))
    fill = gaussian_blur(x, sigma=16 / 20)
    contribution = (net[1].weight[1].detach().view(3, 16, 16) * (x[0] - fill[0])).sum(0)
    for segment in range(count):
        expected = float(contribution[label == segment].sum())
        assert float(maps[0][label == segment][0]) == pytest.approx(expected, abs=1e-4)


def test_superpixels_cover_the_image_with_consecutive_labels():
    label = superpixels(cs.sample_image("coffee", size=64)[0], 20)
    assert label.shape == (64, 64) and label.min() == 0
    assert set(label.unique().tolist()) == set(range(int(label.max()) + 1))


def test_surrogates_run_through_saliency_with_a_class_per_image():
    net, x = small_net(), torch.rand(2, 3, 16, 16)
    raw = cs.saliency(net, x, torch.tensor([0, 4]), method="kernel-shap").raw
    assert raw.shape == (2, 16, 16) and torch.isfinite(raw).all()
