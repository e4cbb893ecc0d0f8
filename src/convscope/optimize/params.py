"""Image parametrizations: what the optimizer actually changes.

* :class:`PixelImage` — the pixels themselves, kept in [0, 1] by projection after each step
  (what Simonyan et al. 2014 and Yosinski et al. 2015 optimize).
* :class:`FourierImage` — a scaled Fourier spectrum in decorrelated color, squashed by a
  sigmoid (Olah et al., Distill 2017): gradient steps favor low frequencies, which is what makes
  visualizations of modern networks recognizable instead of high-frequency noise.
* :class:`MagnitudeImage` — only the Fourier phases, under a magnitude spectrum fixed to that of
  natural photos (MACO, Fel et al. 2023, arXiv:2306.06805): whatever the objective, the image
  keeps a photo's energy at every frequency, so deep units get natural textures and contrast.

Both give ``image()`` as ``(B, 3, H, W)`` in [0, 1] and can start from an existing image
(``from_image``), which is how the octave schedule carries an image to a larger size.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from convscope.core.images import fit
from convscope.errors import ConvscopeError
from convscope.optimize.color import from_rgb, to_rgb
from convscope.samples import training_photos

STARTS = ("noise", "zero", "grey")
PARAMS = ("pixel", "fourier", "maco")
#: Standard deviation of the starting noise in each parametrization's own space.
NOISE = {"pixel": 0.05, "fourier": 0.01}


class ImageParam:
    """A batch of images computed from optimizable tensors."""

    tensors: list[torch.Tensor]

    def image(self) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1], differentiable w.r.t. :attr:`tensors`."""
        raise NotImplementedError

    def project(self) -> None:
        """Brings the tensors back into their valid set after an optimizer step (in place)."""


class PixelImage(ImageParam):
    """Raw pixels ``(B, 3, H, W)``, clamped to [0, 1] after every step."""

    def __init__(self, pixels: torch.Tensor) -> None:
        # contiguous whatever the start's strides (a permuted photo): L-BFGS views gradients flat
        self.pixels = pixels.detach().clone(memory_format=torch.contiguous_format).clamp(0, 1).requires_grad_(True)
        self.tensors = [self.pixels]

    def image(self) -> torch.Tensor:
        return self.pixels

    def project(self) -> None:
        with torch.no_grad():
            self.pixels.clamp_(0, 1)


class FourierImage(ImageParam):
    """A spectrum ``(B, 3, H, W//2+1)`` (complex, as two reals) scaled by ``1 / frequency^decay``,
    transformed to decorrelated color, then to RGB, then squashed into [0, 1] by a sigmoid."""

    def __init__(self, spectrum: torch.Tensor, size: tuple[int, int], decay: float = 1.0) -> None:
        self.size, self.decay = size, decay
        self.spectrum = spectrum.detach().clone().requires_grad_(True)
        self.tensors = [self.spectrum]
        self.scale = _frequency_scale(size, decay, spectrum.device)

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self._spectrum()) * self.scale
        decorrelated = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4
        return torch.sigmoid(to_rgb(decorrelated))

    def _spectrum(self) -> torch.Tensor:
        return self.spectrum

    @classmethod
    def from_image(cls, x: torch.Tensor, decay: float = 1.0) -> "FourierImage":
        """The parametrization whose ``image()`` equals ``x`` ``(B, 3, H, W)`` (pixels clipped to
        [0.001, 0.999], where the sigmoid is invertible)."""
        size = tuple(x.shape[-2:])
        decorrelated = from_rgb(torch.logit(x.clamp(1e-3, 1 - 1e-3)))
        spectrum = torch.fft.rfft2(decorrelated * 4, norm="ortho") / _frequency_scale(size, decay, x.device)
        return cls(torch.view_as_real(spectrum.contiguous()), size, decay)


#: Standard deviation of the decorrelated image before the sigmoid: a photo's contrast.
CONTRAST = 1.5


class SharedFourierImage(FourierImage):
    """A batch whose spectra are one shared part ``(1, 3, H, W//2+1, 2)`` plus each image's own:
    the images of a series (an interpolation between two objectives) stay aligned."""

    def __init__(self, spectrum: torch.Tensor, size: tuple[int, int], decay: float = 1.0) -> None:
        super().__init__(torch.zeros_like(spectrum), size, decay)
        self.shared = spectrum.mean(0, keepdim=True).detach().clone().requires_grad_(True)
        self.tensors = [self.spectrum, self.shared]

    def _spectrum(self) -> torch.Tensor:
        return self.spectrum + self.shared


@lru_cache(maxsize=8)
def natural_magnitude(size: tuple[int, int]) -> torch.Tensor:
    """``(3, H, W//2+1)`` mean magnitude spectrum of the bundled photos in decorrelated colour,
    each centre-cropped to ``size`` and windowed (Hann) so that its borders add no spurious
    horizontal and vertical frequencies; the zero frequency is 0 (the mean is fixed apart)."""
    photos = torch.cat([fit(photo, size) for photo in training_photos(size=max(size))])
    decorrelated = from_rgb(torch.logit(photos.clamp(1e-3, 1 - 1e-3)))
    decorrelated = decorrelated - decorrelated.mean((2, 3), keepdim=True)
    window = torch.outer(torch.hann_window(size[0], periodic=False), torch.hann_window(size[1], periodic=False))
    magnitude = torch.fft.rfft2(decorrelated * window, norm="ortho").abs().mean(0)  # no leakage from the borders
    magnitude[:, 0, 0] = 0
    return magnitude / magnitude.square().sum((1, 2), keepdim=True).sqrt()


class MagnitudeImage(ImageParam):
    """Images ``(B, 3, H, W)`` from phases ``(B, 3, H, W//2+1)`` and a fixed magnitude spectrum:
    ``sigmoid(to_rgb(CONTRAST * standardized(irfft2(magnitude * exp(i phase)))))``."""

    def __init__(self, phase: torch.Tensor, size: tuple[int, int], magnitude: torch.Tensor | None = None) -> None:
        self.size = size
        self.magnitude = (natural_magnitude(tuple(size)) if magnitude is None else magnitude).to(phase.device)
        self.phase = phase.detach().clone().requires_grad_(True)
        self.tensors = [self.phase]

    def decorrelated(self) -> torch.Tensor:
        """``(B, 3, H, W)`` the image before standardization: the fixed magnitude, the phases."""
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        return torch.fft.irfft2(spectrum, s=self.size, norm="ortho")

    def image(self) -> torch.Tensor:
        values = self.decorrelated()
        values = values / values.flatten(2).std(2).clamp_min(1e-8)[..., None, None]
        return torch.sigmoid(to_rgb(CONTRAST * values))

    @classmethod
    def random(cls, batch: int, size: tuple[int, int], generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> MagnitudeImage:
        """Uniformly random phases: natural-looking noise."""
        phase = (torch.rand((batch, 3, size[0], size[1] // 2 + 1), generator=generator) * 2 - 1) * math.pi
        return cls(phase.to(device), size)

    @classmethod
    def from_image(cls, x: torch.Tensor) -> MagnitudeImage:
        """Keeps the phases of ``x`` ``(B, 3, H, W)`` and replaces its magnitude by the natural one."""
        decorrelated = from_rgb(torch.logit(x.clamp(1e-3, 1 - 1e-3)))
        return cls(torch.fft.rfft2(decorrelated, norm="ortho").angle(), tuple(x.shape[-2:]))


def make_param(kind: str, batch: int, size: tuple[int, int], *, start: str | torch.Tensor = "noise",
               center: torch.Tensor | None = None, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> ImageParam:
    """A parametrization of ``batch`` images of ``size`` ``(H, W)``.

    Args:
        kind: ``pixel``, ``fourier`` or ``maco``.
        start: ``noise`` (small random values around ``center``), ``zero`` (``center``: the
            model's mean color, the zero of its normalized input, as Simonyan et al. start),
            ``grey`` (0.5), or a ``(B, 3, H, W)`` image.
        center: ``(3,)`` the mean color, or ``(1,)`` a gray level (default 0.5).
        generator: source of the noise (seeded for reproducible runs).
    """
    if kind not in PARAMS:
        raise ConvscopeError(f"unknown parametrization {kind!r}; accepted: {', '.join(PARAMS)}")
    if not isinstance(start, torch.Tensor) and start not in STARTS:
        raise ConvscopeError(f"unknown start {start!r}; accepted: {', '.join(STARTS)}, or an image")
    center = torch.full((3,), 0.5) if center is None or start == "grey" else torch.as_tensor(center).float().expand(3)
    if isinstance(start, torch.Tensor):
        image = start.detach().float().cpu().expand(batch, 3, *size)
    else:
        image = center.view(1, 3, 1, 1).expand(batch, 3, *size)
    image = image.clamp(0.01, 0.99).to(device)
    if kind == "maco":
        random = isinstance(start, str) and start == "noise"
        return MagnitudeImage.random(batch, size, generator, device) if random else MagnitudeImage.from_image(image)
    param = PixelImage(image) if kind == "pixel" else FourierImage.from_image(image)
    if isinstance(start, str) and start == "noise":
        with torch.no_grad():
            for tensor in param.tensors:
                tensor.add_(NOISE[kind] * torch.randn(tensor.shape, generator=generator).to(tensor))
        param.project()
    return param


def _frequency_scale(size: tuple[int, int], decay: float, device) -> torch.Tensor:
    """``(H, W//2+1)`` the factor ``1 / max(f, 1/max(H, W))^decay`` applied to each frequency."""
    fy = torch.fft.fftfreq(size[0], device=device)[:, None]
    fx = torch.fft.rfftfreq(size[1], device=device)[None, :]
    frequency = (fy**2 + fx**2).sqrt()
    return 1.0 / frequency.clamp_min(1.0 / max(size)) ** decay
