"""Parametrizations, color decorrelation, transforms and priors."""

import itertools

import numpy as np
import pytest
import torch

from convscope.errors import ConvscopeError
from convscope.optimize.color import color_sqrt
from convscope.optimize.params import FourierImage, make_param
from convscope.optimize.priors import ClipNorm, Decay
from convscope.optimize.transforms import Jitter, RandomAffine, RandomRotate, RandomScale, standard_transforms
from convscope.samples import SAMPLES, sample_image


def test_color_sqrt_squares_to_the_photos_covariance():
    pixels = np.concatenate([sample_image(n)[0].flatten(1).T.numpy() for n in SAMPLES]).astype(np.float64)
    covariance = np.cov(pixels.T)
    m = color_sqrt().double().numpy()
    product = m @ m.T
    assert np.allclose(product / product[0, 0], covariance / covariance[0, 0], rtol=1e-3)


@pytest.mark.parametrize("size", [(32, 32), (31, 20)])
def test_fourier_image_round_trips(size):
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    assert torch.allclose(FourierImage.from_image(x).image(), x, atol=1e-5)


def test_fourier_noise_start_is_smooth_grey():
    image = make_param("fourier", 1, (64, 64), generator=torch.Generator().manual_seed(0)).image()
    assert abs(image.mean().item() - 0.5) < 0.02
    # 1/f scaling: neighbouring pixels are strongly correlated
    a, b = image[..., :, :-1].flatten(), image[..., :, 1:].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.5


def test_unknown_param_and_start_are_refused():
    with pytest.raises(ConvscopeError, match="pixel, fourier"):
        make_param("wavelet", 1, (8, 8))
    with pytest.raises(ConvscopeError, match="noise, zero, grey"):
        make_param("pixel", 1, (8, 8), start="black")


def test_transforms_are_seeded_and_identity_at_zero():
    x = torch.rand(1, 3, 20, 20)
    t = standard_transforms()
    one = t(x, torch.Generator().manual_seed(3))
    assert torch.equal(one, t(x, torch.Generator().manual_seed(3)))
    assert torch.allclose(RandomRotate([0])(x, torch.Generator()), x, atol=1e-5)
    assert torch.allclose(RandomScale([1.0])(x, torch.Generator()), x)
    shifted = Jitter(4)(x, torch.Generator().manual_seed(0))
    assert shifted.shape[-2:] == (16, 16)
    dy, dx = torch.randint(0, 4, (2,), generator=torch.Generator().manual_seed(0)).tolist()
    assert torch.equal(shifted, x[..., dy:dy + 16, dx:dx + 16])


def test_random_affine_shifts_and_turns_exactly():
    x = torch.rand(2, 3, 12, 12)
    identity = RandomAffine(0, [1.0], [0])(x, torch.Generator())
    assert torch.allclose(identity, x, atol=1e-6)
    turned = RandomAffine(0, [1.0], [90])(x, torch.Generator())
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5) or \
        torch.allclose(turned, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)
    shifts = set()
    for seed in range(20):
        shifted = RandomAffine(3, [1.0], [0], fill=0.5)(x, torch.Generator().manual_seed(seed))
        shifts.add(next(shift for shift in itertools.product(range(-3, 4), repeat=2)
                        if torch.allclose(shifted, _shifted(x, *shift), atol=1e-5)))
    assert len(shifts) > 5  # integer shifts of up to 3 pixels, grey where the image left


def _shifted(x: torch.Tensor, dy: int, dx: int, fill: float = 0.5) -> torch.Tensor:
    """Output pixel (i, j) shows input pixel (i + dy, j + dx), ``fill`` where there is none."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    out[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        x[..., max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
    return out


def test_decay_and_clip_norm():
    x = torch.tensor([[[[0.0, 1.0]]]]).expand(1, 3, 1, 2).clone()
    Decay(0.5)(x, None, 0)
    assert torch.allclose(x[0, :, 0], torch.tensor([[0.25, 0.75]] * 3))
    y = torch.tensor([0.5, 0.52, 0.9, 0.1]).view(1, 1, 2, 2).expand(1, 3, 2, 2).clone()
    ClipNorm(40)(y, None, 0)  # the lowest 40% of norms (0.02 and 0.0... one pixel) go to the center
    assert torch.allclose(y[0, 0].flatten(), torch.tensor([0.5, 0.5, 0.9, 0.1]))


def test_lbfgs_starts_from_a_permuted_photo(digits):
    """A photo straight from an (H, W, 3) array has permuted strides; L-BFGS needs flat gradients."""
    from convscope.core.objectives import class_logit
    from convscope.optimize.render import render

    photo = torch.rand(8, 8, 3).permute(2, 0, 1)[None]
    assert not photo.is_contiguous()
    param = make_param("pixel", 1, (8, 8), start=photo)
    result = render(digits, class_logit(3), param, steps=2, optimizer="lbfgs")
    assert len(result.scores) == 2 and result.scores[-1, 0] > result.scores[0, 0]
