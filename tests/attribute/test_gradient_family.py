"""Input x Gradient, the noise tunnel (SmoothGrad, SmoothGrad², VarGrad) and GradientSHAP, against Captum
and direct computations on the same noisy copies."""

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.attribute.cam import class_activation_map
from convscope.attribute.noise import gradient_shap, noise_tunnel, smooth_grad
from convscope.core.objectives import class_logit


def relu_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def test_input_x_gradient_equals_captum():
    captum = pytest.importorskip("captum.attr")
    net, x, target = relu_net(), torch.rand(3, 3, 12, 12), torch.tensor([0, 3, 4])
    expected = captum.InputXGradient(net).attribute(x.clone().requires_grad_(True), target=target)
    torch.testing.assert_close(cs.saliency(net, x, target, method="input-x-gradient").raw, expected)


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad-sq", "vargrad"])
def test_noise_tunnel_aggregates_the_gradients_of_its_noisy_copies(kind):
    net, x, target = relu_net(), torch.rand(2, 3, 12, 12), torch.tensor([1, 2])
    samples, noise = 6, 0.2
    result = smooth_grad(net, x, class_logit(target), kind=kind, samples=samples, noise=noise, seed=5)
    generator = torch.Generator().manual_seed(5)  # the same draw, image-major, made by hand
    spread = noise * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    noisy = x[:, None] + torch.randn((2, samples, 3, 12, 12), generator=generator) * spread.view(-1, 1, 1, 1, 1)
    grads = torch.stack([torch.stack([_grad(net, noisy[i, s], int(target[i])) for s in range(samples)])
                         for i in range(2)])
    expected = {"smoothgrad": grads.mean(1), "smoothgrad-sq": (grads ** 2).mean(1),
                "vargrad": (grads ** 2).mean(1) - grads.mean(1) ** 2}[kind]
    torch.testing.assert_close(result, expected, atol=1e-6, rtol=1e-4)


def _grad(net: nn.Module, image: torch.Tensor, target: int) -> torch.Tensor:
    image = image[None].clone().requires_grad_(True)
    return torch.autograd.grad(net(image)[0, target], image)[0][0]


def test_vargrad_matches_captum_noise_tunnel_in_distribution():
    """Same definition as Captum's (population variance of the copies' maps): with many copies both
    approach the same expectation."""
    captum = pytest.importorskip("captum.attr")
    net, x = relu_net(), torch.rand(1, 3, 12, 12)
    stdev = 0.1 * float(x.max() - x.min())
    torch.manual_seed(0)
    theirs = captum.NoiseTunnel(captum.Saliency(net)).attribute(
        x.clone().requires_grad_(True), nt_type="smoothgrad_sq", nt_samples=400, stdevs=stdev, target=2, abs=False)
    ours = smooth_grad(net, x, class_logit(2), kind="smoothgrad-sq", samples=400, noise=0.1)
    assert torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1] > 0.95


def test_noise_tunnel_wraps_a_cam_reading_each_images_class():
    """Without noise the tunnel returns the CAM itself: each image's copies read that image's class."""
    net, x, classes = relu_net(), torch.rand(2, 3, 12, 12), torch.tensor([1, 3])
    plain = cs.saliency(net, x, classes, method="hirescam", layer="2").raw
    tunnel = noise_tunnel(lambda c: class_activation_map(net, c, class_logit(classes), "2", method="hirescam"), x,
                          samples=3, noise=0.0, chunk_size=4)
    torch.testing.assert_close(tunnel, plain)
    assert not torch.allclose(plain[1], cs.saliency(net, x[1:], 1, method="hirescam", layer="2").raw[0])
    noisy = cs.saliency(net, x, classes, method="hirescam", layer="2", noise="smoothgrad", samples=3)
    assert noisy.raw.shape == (2, 12, 12) and noisy.method == "hirescam (smoothgrad)"


def test_gradient_shap_with_one_baseline_and_no_noise_is_a_riemann_integrated_gradient():
    """With one baseline, GradientSHAP is Integrated Gradients with random instead of even steps: with
    many samples it meets completeness, sum = f(x) - f(baseline), like Captum's."""
    captum = pytest.importorskip("captum.attr")
    net, x = relu_net(), torch.rand(1, 3, 12, 12)
    baseline = torch.zeros(1, 3, 12, 12)
    ours = gradient_shap(net, x, class_logit(4), baselines=baseline, samples=600)
    torch.manual_seed(0)
    theirs = captum.GradientShap(net).attribute(x, baselines=baseline, target=4, n_samples=600)
    with torch.no_grad():
        difference = float(net(x)[0, 4] - net(baseline)[0, 4])
    assert abs(float(ours.sum()) - difference) < 0.05 * abs(difference) + 1e-3
    assert abs(float(theirs.sum()) - difference) < 0.05 * abs(difference) + 1e-3
    assert torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1] > 0.9


def test_gradient_shap_of_a_linear_model_is_exact():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    x, baselines = torch.rand(2, 3, 2, 2), torch.rand(5, 3, 2, 2)
    result = gradient_shap(net, x, class_logit(1), baselines=baselines, samples=4000, seed=1)
    expected = net[1].weight[1].view(3, 2, 2) * (x - baselines.mean(0))
    torch.testing.assert_close(result, expected, atol=0.03, rtol=0.0)


def test_gradient_shap_refuses_baselines_of_another_shape():
    with pytest.raises(cs.ConvscopeError, match="baselines must be shaped like the images"):
        gradient_shap(relu_net(), torch.rand(1, 3, 12, 12), class_logit(0), baselines=torch.rand(2, 3, 8, 8))
