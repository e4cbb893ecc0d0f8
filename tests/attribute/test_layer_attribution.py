"""Integrated Gradients at a hidden layer: exact on a linear head, complete on the default model."""

import pytest
import torch
from torch import nn

from convscope.attribute.layer import layer_attribution
from convscope.errors import ConvscopeError
from convscope.samples import sample_image


def linear_head_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def test_equals_activation_times_weight_when_the_rest_is_linear():
    net = linear_head_net()
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    result = layer_attribution(net, x, "1", 2, steps=4)
    with torch.no_grad():
        acts = net[1](net[0](x))
    expected = acts * net[4].weight[2].view(1, 4, 1, 1) / 36    # d logit / d a = w_c / (h w), the same everywhere
    assert torch.allclose(result.values, expected, atol=1e-6)
    assert torch.allclose(result.completeness, torch.ones(2), atol=1e-5)
    assert torch.allclose(result.baseline, net[4].bias[2].expand(2), atol=1e-6)
    assert torch.allclose(result.channels, expected.sum((2, 3)), atol=1e-6)
    assert torch.allclose(result.spatial, expected.sum(1), atol=1e-6)


def test_channel_and_spatial_attributions_add_up_to_the_score_on_the_default_model(lite0):
    x = torch.cat([sample_image("cat", size=224), sample_image("coffee", size=224)])
    result = layer_attribution(lite0, x, "_blocks.10", steps=64)
    assert torch.allclose(result.completeness, torch.ones(2), atol=0.05)
    assert torch.allclose(result.channels.sum(1), result.spatial.flatten(1).sum(1), rtol=1e-4)
    assert result.channels.shape == (2, 112) and result.spatial.shape == (2, 14, 14)


def test_refuses_layers_without_maps(lite0):
    with pytest.raises(ConvscopeError, match="needs"):
        layer_attribution(linear_head_net(), torch.rand(1, 3, 6, 6), "3")
