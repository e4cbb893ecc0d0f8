"""Scenes with known answers: coloured shapes pasted on crops of scikit-image's photos and textures,
with each shape's class, box and mask. The shapes detector and segmenter are trained on them
(``scripts/train_shapes.py``), and the tour scores attribution maps against their ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from PIL import Image, ImageDraw

from convscope.core.images import load_image, resize

#: The shapes, in class order (a segmenter's class 0 is the background).
SHAPES = ("circle", "square", "triangle")
#: scikit-image pictures the backgrounds are cut from (grey ones are tinted).
BACKGROUNDS = ("brick", "grass", "gravel", "camera", "moon", "coins", "coffee", "astronaut", "rocket",
               "hubble_deep_field", "immunohistochemistry", "retina", "chelsea")


@dataclass
class Scene:
    """One picture and what is in it.

    Attributes:
        image: ``(1, 3, S, S)`` in [0, 1].
        classes: ``(n,)`` each shape's index in :data:`SHAPES`.
        boxes: ``(n, 4)`` each shape's box ``x1, y1, x2, y2`` in pixels.
        masks: ``(n, S, S)`` bool, each shape's pixels.
    """

    image: torch.Tensor
    classes: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor

    @property
    def labels(self) -> torch.Tensor:
        """``(S, S)`` the class of each pixel: 0 the background, ``1 + shape`` a shape's (later ones on top)."""
        labels = torch.zeros(self.masks.shape[1:], dtype=torch.long)
        for shape, mask in zip(self.classes, self.masks):
            labels[mask] = int(shape) + 1
        return labels


def scene(seed: int, *, size: int = 224, shapes: tuple[int, int] = (1, 3)) -> Scene:
    """A scene of ``shapes[0]``..``shapes[1]`` shapes, 18-45% of the side each, overlapping little,
    on a random crop of one of :data:`BACKGROUNDS`; the same ``seed`` gives the same scene."""
    rng = np.random.default_rng(seed)
    image = _background(rng, size)
    picture = Image.fromarray((image * 255).astype(np.uint8))
    classes, boxes, masks = [], [], []
    for _ in range(int(rng.integers(shapes[0], shapes[1] + 1))):
        side = int(rng.uniform(0.18, 0.45) * size)
        for _attempt in range(20):
            x1, y1 = (int(v) for v in rng.integers(0, size - side, 2))
            box = (x1, y1, x1 + side, y1 + side)
            if all(_overlap(box, other) < 0.15 for other in boxes):
                break
        else:
            continue
        shape = int(rng.integers(len(SHAPES)))
        mask = Image.new("L", (size, size))
        _draw(ImageDraw.Draw(mask), shape, box, 255)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shaded = Image.new("RGB", (size, size), colour)
        picture.paste(shaded, mask=mask)
        classes.append(shape)
        boxes.append(box)
        masks.append(np.asarray(mask) > 127)
    return Scene(torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float() / 255,
                 torch.tensor(classes, dtype=torch.long), torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
                 torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, size, size, dtype=torch.bool))


def _draw(draw: ImageDraw.ImageDraw, shape: int, box: tuple[int, int, int, int], fill: int) -> None:
    x1, y1, x2, y2 = box
    if SHAPES[shape] == "circle":
        draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=fill)
    elif SHAPES[shape] == "square":
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=fill)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` float in [0, 1]: a random crop of a random background, scaled 1-2x down."""
    photo = _photo(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
    scale = rng.uniform(1.0, 2.0)
    crop = min(int(size * scale), *photo.shape[-2:])
    top = int(rng.integers(0, photo.shape[-2] - crop + 1))
    left = int(rng.integers(0, photo.shape[-1] - crop + 1))
    piece = resize(photo[None, :, top:top + crop, left:left + crop], (size, size))[0]
    if bool((piece[0] == piece[1]).all()):  # grey: tint it
        piece = piece * torch.from_numpy(rng.uniform(0.5, 1.0, 3)).float().view(3, 1, 1)
    return piece.permute(1, 2, 0).clamp(0, 1).numpy()


@cache
def _photo(name: str) -> torch.Tensor:
    from skimage import data

    return load_image(getattr(data, name)())[0]


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """The intersection of two boxes over the smaller one's area."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return width * height / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
