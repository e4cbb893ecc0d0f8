"""Neuron groups (NMF) against a layer of known rank, and the building blocks on the default model."""

import torch
from torch import nn

from convscope.inspect.blocks import building_blocks
from convscope.inspect.groups import neuron_groups
from convscope.samples import sample_image


class KnownLayer(nn.Module):
    """A "network" whose layer ``maps`` outputs ``W H`` with two known non-negative groups."""

    def __init__(self) -> None:
        super().__init__()
        where = torch.zeros(2, 6, 6)
        where[0, :3] = 1.0            # group 1: the top half
        where[1, :, 4:] = 2.0         # group 2: the right third
        self.register_buffer("where", where)
        self.register_buffer("channels", torch.tensor([[1.0, 0, 2, 0, 0], [0, 3, 0, 1, 0]]))
        self.maps = nn.Identity()
        self.head = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        self.head(x)
        return self.maps(torch.einsum("khw,kc->chw", self.where, self.channels)[None].expand(len(x), -1, -1, -1))


def test_two_groups_are_found_exactly():
    groups = neuron_groups(KnownLayer(), torch.rand(1, 3, 6, 6), "maps", groups=2)
    assert groups.error < 1e-3
    directions = torch.nn.functional.normalize(KnownLayer().channels, dim=1)
    found = {tuple(d.round(decimals=3).tolist()) for d in groups.directions}
    assert found == {tuple(d.round(decimals=3).tolist()) for d in directions}
    assert torch.allclose(groups.contributions.sum(0), groups.activations.sum(0), atol=1e-3)


def test_groups_of_a_real_layer(lite0):
    x = sample_image("cat", size=224)
    few, more = (neuron_groups(lite0, x, "_blocks.10", groups=k) for k in (3, 12))
    assert more.error < few.error < 0.75
    assert torch.allclose(more.contributions.sum(0), more.reconstruction.sum(0), atol=1e-4)
    total = more.activations.sum(0)
    assert (more.contributions.sum(0) - total).abs().sum() / total.sum() < 0.1  # the maps add up to the layer's
    assert (more.maps >= 0).all() and torch.allclose(more.directions.norm(dim=1), torch.ones(12))


def test_building_blocks_shares_add_up_to_the_layer_attribution(lite0):
    blocks = building_blocks(lite0, sample_image("coffee", size=224), "_blocks.10", groups=4, steps=16, size=32,
                             render_steps=2)
    covered = blocks.groups.contributions.sum(0) > 0
    assert abs(float(blocks.scores.sum() - blocks.attribution.spatial[0][covered].sum())) < 1e-4
    assert blocks.visualizations.shape == (4, 3, 32, 32)
    shown = blocks.picture()
    assert "4 neuron groups" in shown.caption and shown.array.shape[0] > 2 * 224
