"""The bundled sample photos (from scikit-image) used by the tour, tests and web explorer."""

from __future__ import annotations

import torch

from convscope.core.images import load_image
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
