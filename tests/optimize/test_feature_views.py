"""MACO, channel views, caricatures and neuron interaction on the default model."""

import torch
import torch.nn.functional as F

from convscope.core.hooks import capture
from convscope.core.objectives import channel, custom
from convscope.inspect.predictions import probabilities
from convscope.optimize.caricature import caricature
from convscope.optimize.color import from_rgb
from convscope.optimize.interaction import interpolate
from convscope.optimize.maco import importance
from convscope.optimize.params import CONTRAST, FourierImage, MagnitudeImage, make_param, natural_magnitude
from convscope.optimize.render import render
from convscope.optimize.transforms import Compose, standard_transforms
from convscope.optimize.visualize import channel_views, visualize_class
from convscope.samples import sample_image


def magnitude_of(images: torch.Tensor) -> torch.Tensor:
    """The images' magnitude spectra in decorrelated colour, recovered from the pixels, each
    channel scaled to unit energy; columns 1..W/2-1 only (the others hold conjugate pairs)."""
    decorrelated = from_rgb(torch.logit(images.double().clamp(1e-6, 1 - 1e-6))) / CONTRAST
    magnitude = torch.fft.rfft2(decorrelated, norm="ortho").abs()[..., 1:-1]
    return magnitude / magnitude.square().sum((-2, -1), keepdim=True).sqrt()


def test_maco_keeps_the_natural_magnitude_while_the_objective_rises(lite0):
    param = make_param("maco", 2, (64, 64), generator=torch.Generator().manual_seed(0))
    assert isinstance(param, MagnitudeImage)
    result = render(lite0, channel("_blocks.6", torch.tensor([3, 9])), param, steps=12, lr=0.2)
    assert (result.scores[-1] > result.scores[0]).all()
    target = natural_magnitude((64, 64))[..., 1:-1].double()
    target = target / target.square().sum((-2, -1), keepdim=True).sqrt()
    assert torch.allclose(magnitude_of(result.images), target.expand(2, -1, -1, -1), atol=2e-3)
    fourier = render(lite0, channel("_blocks.6", torch.tensor([3, 9])), make_param("fourier", 2, (64, 64)), steps=12)
    assert (magnitude_of(fourier.images) - target).abs().max() > 0.05  # the Fourier recipe's spectrum is free


def test_maco_class_visualization_is_recognized_on_jittered_copies(lite0):
    result = visualize_class(lite0, "goldfish", recipe="maco", steps=96)
    generator = torch.Generator().manual_seed(1)
    transforms = standard_transforms()
    copies = torch.cat([F.interpolate(transforms(result.images, generator), size=(224, 224), mode="bilinear")
                        for _ in range(8)])
    assert probabilities(lite0, copies)[:, 1].mean() >= 0.9


def test_importance_is_where_the_objective_reads(lite0):
    left_half = custom(lambda acts: acts["input"][..., :16].sum((1, 2, 3)), ["input"], "left half")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    weights = importance(lite0, left_half, images, samples=2, transforms=Compose([]))
    assert weights.shape == (2, 32, 32) and weights.amax() == 1
    assert (weights[..., :8] > 0.99).all() and (weights[..., 24:] == 0).all()  # 4 px of blur at the edge


def test_channel_views_are_positive_negative_and_diverse(lite0):
    views = channel_views(lite0, "_blocks.6", [3, 9], diverse=2, size=64, steps=24, diversity_weight=5.0)
    assert views.positive.shape == (2, 3, 64, 64) and views.diverse.shape == (2, 2, 3, 64, 64)
    with torch.no_grad():
        acts = capture(lite0, lite0.net, torch.cat([views.positive, views.negative]), ["_blocks.6"])["_blocks.6"]
    means = acts.mean((2, 3))
    for i, c in enumerate((3, 9)):
        assert means[i, c] > means[2 + i, c]  # each channel's positive above its negative
    assert (views.diverse[:, 0] - views.diverse[:, 1]).abs().mean() > 0.05
    assert "positive | negative | 2 diverse" in views.picture(1).caption


def test_caricature_points_the_layer_the_way_the_photo_does(lite0):
    photo = sample_image("cat", size=96)
    result = caricature(lite0, photo, "_blocks.4", steps=32)
    with torch.no_grad():
        acts = capture(lite0, lite0.net, torch.cat([photo, result.images, torch.full_like(photo, 0.5)]),
                       ["_blocks.4"])["_blocks.4"].flatten(1)
    cosine = F.cosine_similarity(acts[1:], acts[:1])
    assert cosine[0] > cosine[1] + 0.2  # far closer to the photo than a flat grey image is


def test_interpolation_walks_from_one_channel_to_the_other(lite0):
    first, second = channel("_blocks.6", 3), channel("_blocks.6", 9)
    result = interpolate(lite0, first, second, count=4, size=64, steps=32)
    with torch.no_grad():
        acts = {"_blocks.6": capture(lite0, lite0.net, result.images, ["_blocks.6"])["_blocks.6"]}
    a, b = first(acts), second(acts)
    assert a[0] > a[-1] and b[-1] > b[0]


def test_shared_fourier_part_gets_gradient():
    from convscope.optimize.params import SharedFourierImage

    start = FourierImage.from_image(torch.full((3, 3, 16, 16), 0.5)).spectrum
    param = SharedFourierImage(start, (16, 16))
    param.image()[0].mean().backward()
    assert param.shared.grad.abs().sum() > 0 and param.spectrum.grad[1:].abs().sum() == 0
