"""Each metric against Quantus 0.6.0, Captum's metrics or a direct computation on the same
perturbations; controls that a metric can tell a bad map from a good one."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convscope as cs
from convscope.evaluate.complexity import sparseness
from convscope.evaluate.curves import Curve, deletion, insertion
from convscope.evaluate.randomization import cascading_randomization, random_logit
from convscope.evaluate.road import NEIGHBOURS, impute, road
from convscope.evaluate.robustness import infidelity, max_sensitivity
from convscope.evaluate.runner import method_explainer
from convscope.models.model import as_model


def small_net(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def sobel(model, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """An edge detector: a 'map' that ignores the model and the class."""
    grey = x.mean(1, keepdim=True)
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx = F.conv2d(grey, kernel.view(1, 1, 3, 3), padding=1)
    gy = F.conv2d(grey, kernel.t().reshape(1, 1, 3, 3), padding=1)
    return (gx ** 2 + gy ** 2).sqrt()[:, 0]


def test_deletion_equals_quantus_pixel_flipping():
    quantus = pytest.importorskip("quantus")
    net = small_net(1)
    x, maps, classes = torch.rand(4, 1, 10, 10), torch.rand(4, 10, 10), torch.tensor([0, 1, 2, 3])
    curve = deletion(as_model(net), x, maps, classes, steps=25)
    metric = quantus.PixelFlipping(features_in_step=4, perturb_baseline=0.0, disable_warnings=True,
                                   display_progressbar=False)
    theirs = np.array(metric(model=net, x_batch=x.numpy(), y_batch=classes.numpy(), a_batch=maps[:, None].numpy(),
                             softmax=True, device="cpu"))
    assert curve.scores.shape == (4, 26)
    np.testing.assert_allclose(curve.scores[:, 1:].numpy(), theirs, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(curve.scores[:, 0], net(x).softmax(-1)[torch.arange(4), classes])


def test_insertion_by_hand_with_ties_in_pixel_order():
    net = small_net()
    x, classes = torch.rand(2, 3, 6, 6), torch.tensor([4, 1])
    maps = torch.rand(2, 6, 6).round(decimals=1)  # ties: the earlier pixel goes first
    curve = insertion(as_model(net), x, maps, classes, steps=12, fill=0.5)
    for b in range(2):
        order = sorted(range(36), key=lambda p: (-float(maps[b].flatten()[p]), p))
        for k, fraction in enumerate(curve.fractions):
            taken = torch.zeros(36, dtype=torch.bool)
            taken[order[:round(float(fraction) * 36)]] = True
            image = torch.where(taken.view(1, 6, 6), x[b], torch.full_like(x[b], 0.5))
            with torch.no_grad():
                expected = net(image[None]).softmax(-1)[0, classes[b]]
            assert curve.scores[b, k] == pytest.approx(float(expected), abs=1e-6)


def test_curve_area_is_the_trapezoid_over_the_fractions():
    curve = Curve(torch.tensor([0.0, 0.25, 1.0]), torch.tensor([[1.0, 0.5, 0.0]]))
    assert float(curve.auc[0]) == pytest.approx(0.25 * 0.75 + 0.75 * 0.25)
    assert float(Curve(torch.tensor([0.2, 0.6]), torch.tensor([[1.0, 0.0]])).auc[0]) == pytest.approx(0.5)


def test_road_imputation_equals_quantus_and_solves_the_neighbour_equations():
    perturb = pytest.importorskip("quantus.functions.perturb_func")
    torch.manual_seed(1)
    image, removed = torch.rand(3, 9, 11, dtype=torch.float64), torch.rand(9, 11) < 0.6
    ours = impute(image, removed, noise=0.0)
    theirs = perturb.noisy_linear_imputation(image.numpy(), np.flatnonzero(removed.numpy()), noise=0.0)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-9)
    assert torch.equal(ours[:, ~removed], image[:, ~removed])
    for y, x in removed.nonzero().tolist():   # each filled pixel is the weighted mean of its neighbours
        around = [(ours[:, y + dy, x + dx], w) for (dy, dx), w in NEIGHBOURS if 0 <= y + dy < 9 and 0 <= x + dx < 11]
        mean = sum(v * w for v, w in around) / sum(w for _, w in around)
        torch.testing.assert_close(ours[:, y, x], mean)


def test_road_morf_removes_the_most_relevant_pixels():
    net = small_net()
    x, classes = torch.rand(1, 3, 8, 8), torch.tensor([2])
    maps = torch.arange(64.0).view(1, 8, 8)
    curve = road(as_model(net), x, maps, classes, fractions=(0.25,), noise=0.0)
    removed = torch.zeros(8, 8, dtype=torch.bool)
    removed.view(-1)[48:] = True  # the 16 largest values of the map
    with torch.no_grad():
        expected = net(impute(x[0], removed, noise=0.0)[None]).softmax(-1)[0, 2]
    assert float(curve.scores[0, 0]) == pytest.approx(float(expected), abs=1e-6)


def test_sparseness_equals_quantus():
    quantus = pytest.importorskip("quantus")
    maps = torch.rand(3, 8, 8) ** 4
    theirs = quantus.Sparseness(disable_warnings=True, display_progressbar=False)(
        model=None, x_batch=np.zeros((3, 1, 8, 8)), y_batch=np.zeros(3, dtype=int), a_batch=maps[:, None].numpy())
    np.testing.assert_allclose(sparseness(maps).numpy(), theirs, atol=1e-5)
    assert float(sparseness(torch.ones(1, 5, 5))[0]) == pytest.approx(0.0, abs=1e-6)
    one = torch.zeros(1, 5, 5)
    one[0, 2, 2] = 1
    assert float(sparseness(one)[0]) == pytest.approx(24 / 25)


def test_max_sensitivity_equals_captum_on_the_same_perturbations():
    metrics = pytest.importorskip("captum.metrics")
    net, x, classes = small_net(), torch.rand(2, 3, 10, 10), torch.tensor([1, 3])
    explain = method_explainer("gradient")
    ours = max_sensitivity(as_model(net), x, classes, explain, radius=0.05, samples=4, seed=3)
    generator = torch.Generator().manual_seed(3)
    deltas = torch.stack([(torch.rand(x.shape, generator=generator) * 2 - 1) * 0.05 for _ in range(4)], 1)

    def perturb(inputs, perturb_radius):   # Captum repeats each input for its samples, image-major
        return _first(inputs) + deltas.flatten(0, 1)

    def explanation(inputs, target):
        return (explain(as_model(net), _first(inputs), target)[:, None],)  # Captum iterates over a tuple
    theirs = metrics.sensitivity_max(explanation, x, perturb_func=perturb, n_perturb_samples=4,
                                     target=classes)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def _first(inputs):
    return inputs[0] if isinstance(inputs, tuple) else inputs


def test_infidelity_equals_captum_normalized_on_the_same_perturbations():
    metrics = pytest.importorskip("captum.metrics")
    net, x, classes = small_net(), torch.rand(2, 3, 10, 10), torch.tensor([1, 3])
    maps = torch.rand(2, 10, 10)
    ours = infidelity(as_model(net), x, maps, classes, noise=0.1, samples=6, seed=2)
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn((2, 6, 3, 10, 10), generator=generator) * 0.1

    def perturb(inputs):
        flat = noise.flatten(0, 1)
        return flat, _first(inputs) - flat
    theirs = metrics.infidelity(net, perturb, x, maps[:, None].expand(-1, 3, -1, -1), target=classes,
                                n_perturb_samples=6, max_examples_per_batch=12, normalize=True)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-3)


def test_an_edge_detector_fails_the_randomization_checks(digits):
    x = torch.stack([digits.prepare(torch.rand(1, 1, 8, 8))[0] for _ in range(2)])
    classes = torch.tensor([3, 5])
    edges, _ = cascading_randomization(digits, x, classes, sobel, blocks=3)
    assert torch.allclose(edges, torch.ones_like(edges))
    assert torch.allclose(random_logit(digits, x, classes, sobel, classes_count=10), torch.ones(2))
    gradients, kept = cascading_randomization(digits, x, classes, method_explainer("gradient"), blocks=3)
    assert gradients.shape == (2, 3) and kept[-1] == ""
    assert float(gradients[:, -1].mean()) < 0.9
    assert float(random_logit(digits, x, classes, method_explainer("gradient"), classes_count=10).mean()) < 0.9


@pytest.mark.slow
def test_a_random_map_scores_worse_than_grad_cam_on_insertion_and_road_on_the_trained_model(lite0):
    """The controls. Deletion painting pixels black is not one of them: a random pixel map wrecks the
    image with black speckle faster than any map removes what the model uses (on these photos its
    deletion area is lower than Grad-CAM's), the artifact ROAD was made to remove."""
    x = torch.cat([cs.load_image(cs.sample_image(name), size=lite0.input_size) for name in ("cat", "coffee")])
    classes = cs.probabilities(lite0, x).argmax(-1)
    cam = cs.saliency(lite0, x, classes, method="gradcam").map
    random = torch.rand(cam.shape, generator=torch.Generator().manual_seed(0))
    good, bad = (insertion(lite0, x, maps, classes, steps=50).auc for maps in (cam, random))
    assert (good > bad).all(), (good, bad)
    good, bad = (road(lite0, x, maps, classes, fractions=(0.1, 0.3, 0.5, 0.7, 0.9)).auc for maps in (cam, random))
    assert (good < bad).all(), (good, bad)
