"""Layer-wise relevance propagation against Zennit 0.5.1 (installed --no-deps) and by hand."""

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.attribute.lrp import COMPOSITES, lrp
from convscope.core.objectives import class_logit
from tests.attribute.test_gradients import three_ways
from tests.conftest import assert_unchanged, snapshot


def batch_norm_net() -> nn.Module:
    """conv-BN-ReLU, conv-ReLU6, max pool, conv-ReLU, adaptive average pool, two linear layers."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU6(),
                        nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.1, 0.1)
    return net.eval()


ZENNIT = {"epsilon-gamma-box": "EpsilonGammaBox", "epsilon-plus-flat": "EpsilonPlusFlat",
          "epsilon-alpha2-beta1": "EpsilonAlpha2Beta1", "epsilon-plus": "EpsilonPlus"}


@pytest.mark.parametrize("composite", ZENNIT)
def test_equals_zennit_with_batch_norm_merged(composite):
    zennit = pytest.importorskip("zennit.composites")
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    x, classes = torch.rand(2, 3, 16, 16), torch.tensor([1, 3])
    ours = lrp(batch_norm_net(), x, class_logit(classes), composite=composite)
    kwargs = {"low": 0.0, "high": 1.0} if composite == "epsilon-gamma-box" else {}
    rules = getattr(zennit, ZENNIT[composite])(canonizers=[SequentialMergeBatchNorm()], **kwargs)
    with Gradient(model=batch_norm_net(), composite=rules) as attributor:
        _, theirs = attributor(x.clone(), lambda out: torch.eye(5)[classes] * out)
    torch.testing.assert_close(ours.relevance, theirs, atol=1e-7, rtol=1e-4)


def test_epsilon_rule_by_hand():
    """x = (1, 2, 0) (one pixel, three channels); z = W1 x = (1*1 - 1*2, 2*1 + 1*2) = (-1, 4);
    a = ReLU(z) = (0, 4); y = 3 * 0 + 0.5 * 4 = 2. All of y's relevance 2 goes to a2 (a1 = 0), then
    R_x = x * W1[1] * R_a2 / z2 = (1*2, 2*1, 0*7) * 2 / 4."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0, 5.0], [2.0, 1.0, 7.0]]))
        net[3].weight.copy_(torch.tensor([[3.0, 0.5]]))
    x = torch.tensor([1.0, 2.0, 0.0]).view(1, 3, 1, 1)
    result = lrp(net, x, class_logit(0), composite="epsilon")
    torch.testing.assert_close(result.relevance.flatten(), torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(result.score, torch.tensor([2.0]))


class ResidualNet(nn.Module):
    """Bias-free ReLU network with a residual sum and an average pool."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.branch = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.head = nn.Linear(6, 4, bias=False)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.branch(x))
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize("composite", ["epsilon", "epsilon-plus"])
def test_relevance_is_conserved_through_sums_and_pools_without_biases(composite):
    net, x = ResidualNet().eval(), torch.rand(3, 3, 10, 10)
    with torch.no_grad():
        classes = net(x).argmax(1)  # positive scores: z+ rules conserve what reaches them
    result = lrp(net, x, class_logit(classes), composite=composite)
    torch.testing.assert_close(result.conservation, torch.ones(3), atol=1e-4, rtol=0)


@pytest.mark.parametrize("composite", COMPOSITES)
def test_rules_reach_reused_modules_and_functional_calls(composite):
    nets, x = three_ways(), torch.rand(2, 3, 8, 8)
    maps = [lrp(net, x, class_logit(torch.tensor([0, 2])), composite=composite).relevance for net in nets]
    torch.testing.assert_close(maps[1], maps[0])
    torch.testing.assert_close(maps[2], maps[0])


def test_saliency_reports_conservation_and_leaves_the_model_as_it_was():
    net, x = batch_norm_net(), torch.rand(1, 3, 16, 16)
    before = snapshot(net)
    result = cs.saliency(net, x, 2, method="lrp")
    assert_unchanged(before, net)
    assert result.raw.shape == (1, 3, 16, 16)
    picture = result.picture()
    assert "relevance kept" in picture.caption and "conservation" in picture.numbers


def test_lrp_is_refused_in_one_line_where_it_cannot_apply():
    with pytest.raises(cs.ConvscopeError, match="use the gradient"):
        lrp(nn.Sequential(nn.Flatten(), nn.Softmax(-1)), torch.rand(1, 3, 4, 4), class_logit(0))
    with pytest.raises(cs.ConvscopeError, match="LRP composite"):
        lrp(batch_norm_net(), torch.rand(1, 3, 16, 16), class_logit(0), composite="gamma-only")
