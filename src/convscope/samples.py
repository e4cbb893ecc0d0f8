"""The bundled sample photos (from scikit-image) used by the tour, tests and web explorer."""

from __future__ import annotations

import numpy as np
import torch

from convscope.core.images import load_image, resize
from convscope.errors import unknown_choice

#: Sample name -> scikit-image loader name; real photographs that ship with scikit-image.
SAMPLES = {"cat": "chelsea", "coffee": "coffee", "astronaut": "astronaut", "rocket": "rocket"}


def sample_image(name: str, *, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """A bundled photo as ``(1, 3, H, W)`` in [0, 1] (optionally resized and center-cropped).

    Names are ``cat``, ``coffee``, ``astronaut``, ``rocket`` (scikit-image's names work too).
    """
    from skimage import data

    loader = SAMPLES.get(name, name if name in SAMPLES.values() else None)
    if loader is None:
        raise unknown_choice("sample image", name, SAMPLES)
    return load_image(getattr(data, loader)(), size=size)


#: Style images: one texture photo that ships with scikit-image and two made here.
STYLES = ("stained-glass", "brushstrokes", "tissue")


def style_image(name: str, *, size: int = 512, seed: int = 0) -> torch.Tensor:
    """A style image as ``(1, 3, size, size)`` in [0, 1].

    ``stained-glass``: saturated Voronoi cells with dark lead lines; ``brushstrokes``: blue and
    yellow strokes that follow a swirling flow (line-integral convolution of noise);
    ``tissue``: scikit-image's immunohistochemistry stain, a natural texture.
    """
    if name not in STYLES:
        raise unknown_choice("style image", name, STYLES)
    if name == "tissue":
        from skimage import data

        return load_image(data.immunohistochemistry(), size=size)
    rng = np.random.default_rng(seed)
    array = _stained_glass(size, rng) if name == "stained-glass" else _brushstrokes(size, rng)
    return torch.from_numpy(array).permute(2, 0, 1)[None].float().clamp(0, 1)


def _stained_glass(size: int, rng: np.random.Generator, cells: int = 120) -> np.ndarray:
    palette = np.array([[0.85, 0.1, 0.1], [0.1, 0.3, 0.85], [0.95, 0.75, 0.1], [0.1, 0.6, 0.25],
                        [0.55, 0.15, 0.65], [0.95, 0.45, 0.1], [0.15, 0.7, 0.8]])
    seeds = rng.uniform(0, size, (cells, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    distance = np.sqrt((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2)
    nearest = np.sort(np.partition(distance, 1, axis=-1)[..., :2], axis=-1)
    owner = distance.argmin(-1)
    colors = palette[rng.integers(0, len(palette), cells)][owner]
    shade = 0.75 + 0.25 * np.clip(1 - nearest[..., 0] / (size / np.sqrt(cells)), 0, 1)[..., None]
    lead = np.clip((nearest[..., 1] - nearest[..., 0]) / (size / 150), 0, 1)[..., None]
    return colors * shade * lead + 0.05 * (1 - lead)


def _brushstrokes(size: int, rng: np.random.Generator, length: int = 24) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = 4 * np.sin(3 * xx + 1.3) + 4 * np.cos(2.5 * yy) + 2 * np.sin(5 * xx * yy)
    noise = rng.random((size, size)).astype(np.float32)
    strokes = np.zeros_like(noise)
    for direction in (1, -1):
        y, x = yy * size, xx * size
        for _ in range(length):
            iy, ix = y.astype(int) % size, x.astype(int) % size
            strokes += noise[iy, ix]
            a = angle[iy, ix]
            y, x = y + direction * np.sin(a), x + direction * np.cos(a)
    strokes = (strokes / (2 * length) - 0.5) * 6 + 0.5
    mix = np.clip(0.5 + 0.4 * np.sin(2 * angle) + 0.3 * (strokes - 0.5), 0, 1)[..., None]
    blue, yellow = np.array([0.1, 0.2, 0.55]), np.array([0.95, 0.8, 0.25])
    return (blue * (1 - mix) + yellow * mix) * np.clip(0.6 + 0.6 * strokes, 0, 1.2)[..., None]


#: scikit-image photos (colour and grey) that fast style training uses by default; the cat is
#: left out so that it stays an unseen image.
TRAINING_PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "retina", "camera", "moon", "coins",
                   "grass", "gravel", "brick", "clock")


def training_photos(*, size: int = 384) -> list[torch.Tensor]:
    """The :data:`TRAINING_PHOTOS` as ``(1, 3, H, W)`` images whose shorter side is ``size``."""
    from skimage import data

    photos = [load_image(getattr(data, name)()) for name in TRAINING_PHOTOS]
    return [resize(p, [round(side * size / min(p.shape[-2:])) for side in p.shape[-2:]]) for p in photos]
