"""Class and channel visualization and feature inversion on the default model (fixed seeds)."""

import torch
import torch.nn.functional as F

from convscope.core.hooks import capture
from convscope.optimize.invert import inversion_ladder
from convscope.optimize.params import make_param
from convscope.optimize.transforms import standard_transforms
from convscope.optimize.visualize import visualize_channel, visualize_class


def test_class_visualization_is_confident_on_jittered_copies(lite0):
    result = visualize_class(lite0, ["goldfish"], steps=128, seed=0)
    transforms = standard_transforms()
    copies = torch.cat([F.interpolate(transforms(result.images, torch.Generator().manual_seed(s)), size=(224, 224),
                                      mode="bilinear") for s in range(6)])
    with torch.no_grad():
        probabilities = lite0(copies).softmax(-1)[:, 1]
    assert probabilities.min() >= 0.95, probabilities


def test_channel_visualization_raises_the_channel_tenfold(lite0):
    channels = torch.tensor([0, 1, 2, 3])
    result = visualize_channel(lite0, "_blocks.10", channels.tolist(), seed=0)
    start = make_param("fourier", 4, (128, 128), center=torch.tensor(lite0.mean),
                       generator=torch.Generator().manual_seed(0)).image().detach()
    with torch.no_grad():
        before = capture(lite0, lite0.net, start, ["_blocks.10"])["_blocks.10"].mean((2, 3))[range(4), channels]
        after = capture(lite0, lite0.net, result.images, ["_blocks.10"])["_blocks.10"].mean((2, 3))[range(4), channels]
    assert (after >= 10 * before.abs()).all(), (before, after)


def test_inversion_loses_information_with_depth(lite0, cat):
    ladder = inversion_ladder(lite0, cat, ["_blocks.1", "_blocks.8", "_blocks.15"], steps=150)
    early, middle, last = ladder.similarity
    assert early >= 0.6
    assert early > middle > last
