"""Grad-CAM family against closed forms; SmoothGrad and Integrated Gradients properties."""

import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribute.averaged import integrated_gradients
from convscope.attribute.noise import smooth_grad
from convscope.attribute.cam import grad_cam, guided_grad_cam, last_spatial_layer
from convscope.attribute.core import attribute
from convscope.core.objectives import class_logit
from tests.attribute.test_gradients import Flattening
from tests.conftest import assert_unchanged, snapshot


def linear_head_net() -> nn.Sequential:
    """conv features A, then logits = W . mean(A): the gradient w.r.t. A is W / (h w) everywhere."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(5, 3, bias=False))


def test_grad_cam_closed_form():
    net = linear_head_net()
    x = torch.rand(2, 3, 6, 6)
    acts = torch.relu(net[0](x)).detach()
    w = net[4].weight[2].detach() / 36                      # spatially averaged gradient
    expected = torch.relu((w.view(1, -1, 1, 1) * acts).sum(1))
    torch.testing.assert_close(grad_cam(net, x, class_logit(2), "1"), expected)


def test_grad_cam_plus_plus_closed_form():
    net = linear_head_net()
    x = torch.rand(1, 3, 6, 6)
    acts = torch.relu(net[0](x)).detach()
    g = (net[4].weight[0].detach() / 36).view(1, -1, 1, 1).expand_as(acts)
    alpha = g**2 / (2 * g**2 + acts.sum((2, 3), keepdim=True) * g**3)
    weights = (alpha * torch.relu(g)).sum((2, 3))
    expected = torch.relu((weights[:, :, None, None] * acts).sum(1))
    torch.testing.assert_close(grad_cam(net, x, class_logit(0), "1", plus_plus=True), expected)


def test_grad_cam_on_a_network_flattening_with_view():
    """It cannot run channels-last (as CAMs do on CPU); closed form: the gradient w.r.t. the conv's
    output is the classifier's row, reshaped, where the ReLU passes."""
    net, x = Flattening(), torch.rand(2, 3, 8, 8)
    before = snapshot(net)
    got = grad_cam(net, x, class_logit(1), "conv")
    assert_unchanged(before, net)
    acts = net.conv(x).detach()
    grad = net.fc.weight[1].detach().view(1, 4, 6, 6) * (acts > 0)
    cam = torch.relu((grad.mean((2, 3))[:, :, None, None] * acts).sum(1, keepdim=True))
    torch.testing.assert_close(got, F.interpolate(cam, size=(8, 8), mode="bilinear", align_corners=False)[:, 0])


def test_grad_cam_works_on_a_frozen_model_without_weight_gradients(lite0, cat):
    for p in lite0.net.parameters():
        p.requires_grad_(False)
    before = snapshot(lite0.net)
    try:
        cam = grad_cam(lite0, cat, class_logit(285))
        assert cam.shape == (1, 224, 224) and cam.max() > 0
        assert_unchanged(before, lite0.net)
    finally:
        for p in lite0.net.parameters():
            p.requires_grad_(True)


def test_grad_cam_upsamples_and_guided_multiplies():
    net = linear_head_net()
    x = torch.rand(1, 3, 6, 6)
    cam = grad_cam(net, x, class_logit(1), "1")
    guided = attribute(net, x, class_logit(1), rule="guided")
    torch.testing.assert_close(guided_grad_cam(net, x, class_logit(1), "1"), guided * cam[:, None])


def test_default_cam_layer_is_the_last_spatial_one(lite0):
    assert last_spatial_layer(lite0) == "_swish@1"  # the 1280x7x7 head activation


def test_integrated_gradients_completeness_on_default_model(lite0, cat):
    ig = integrated_gradients(lite0, cat, class_logit(285))
    assert ig.shape == cat.shape
    with torch.no_grad():
        difference = lite0(cat)[0, 285] - lite0(torch.zeros_like(cat))[0, 285]
    assert abs(ig.sum() - difference) <= 0.01 * abs(difference)


def test_integrated_gradients_of_a_linear_model_is_exact():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    x = torch.rand(2, 3, 2, 2)
    expected = net[1].weight[1].view(3, 2, 2) * x
    torch.testing.assert_close(integrated_gradients(net, x, class_logit(1), steps=4), expected)


def test_chunk_size_does_not_change_results():
    net = linear_head_net()
    x = torch.rand(2, 3, 6, 6)
    maps = [smooth_grad(net, x, class_logit(0), samples=5, chunk_size=c) for c in (1, 3, 16)]
    torch.testing.assert_close(maps[0], maps[1])
    torch.testing.assert_close(maps[0], maps[2])


def test_smooth_grad_with_no_noise_is_the_gradient():
    net = linear_head_net()
    x = torch.rand(2, 3, 6, 6)
    torch.testing.assert_close(smooth_grad(net, x, class_logit(0), samples=3, noise=0.0),
                               attribute(net, x, class_logit(0)))


def test_smooth_grad_is_seeded():
    net = linear_head_net()
    x = torch.rand(1, 3, 6, 6)
    one, two = (smooth_grad(net, x, class_logit(0), samples=4, seed=3) for _ in range(2))
    assert torch.equal(one, two)
    assert not torch.equal(one, smooth_grad(net, x, class_logit(0), samples=4, seed=4))
    assert F.cosine_similarity(one.flatten(), attribute(net, x, class_logit(0)).flatten(), dim=0) > 0.5
