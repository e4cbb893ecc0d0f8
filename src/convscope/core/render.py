"""Turning tensors into pictures: grids, colormaps, overlays, PNG files.

Compute functions return tensors; only this module makes pixels for people to look at.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convscope.core.images import to_uint8
from convscope.errors import ConvscopeError


@dataclass
class Picture:
    """An RGB picture that shows itself in a notebook and saves as PNG.

    Attributes:
        array: ``(H, W, 3)`` uint8 pixels.
        caption: one line saying what the picture shows.
        numbers: the values behind it (class, probability, layer, ...), JSON-friendly.
    """

    array: np.ndarray
    caption: str = ""
    numbers: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Writes the picture as PNG atomically: no partial file is ever left behind."""
        return save_png(self.array, path)

    def array_tensor(self) -> torch.Tensor:
        """The pixels as a ``(3, H, W)`` tensor in [0, 1]."""
        return torch.from_numpy(self.array).permute(2, 0, 1).float() / 255

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.array)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.to_pil().save(buffer, format="PNG")
        return buffer.getvalue()


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Saves an ``(H, W, 3)`` or ``(H, W)`` uint8 array as PNG via a temporary file and rename."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConvscopeError(f"{path}: output must be a .png file")
    if not path.parent.exists():
        raise ConvscopeError(f"{path.parent}: no such folder for the output")
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            Image.fromarray(array).save(stream, format="PNG")
        os.chmod(temporary, 0o644)  # mkstemp makes owner-only files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def grid(tiles: torch.Tensor, *, columns: int | None = None, padding: int = 2,
         background: float = 1.0, tile_size: int | None = None) -> torch.Tensor:
    """Lays out images on a grid.

    Args:
        tiles: ``(N, C, h, w)`` images in [0, 1], C = 1 or 3.
        columns: tiles per row; near-square when omitted.
        padding: pixels between tiles.
        background: gray level of the padding.
        tile_size: if given, each tile is upscaled (nearest) so its longer side is at least this.

    Returns:
        ``(3, H, W)`` image in [0, 1].
    """
    tiles = tiles.detach().float().cpu()
    if tiles.shape[1] == 1:
        tiles = tiles.expand(-1, 3, -1, -1)
    n, _, h, w = tiles.shape
    if tile_size and max(h, w) < tile_size:
        factor = -(-tile_size // max(h, w))
        tiles = F.interpolate(tiles, scale_factor=factor, mode="nearest")
        h, w = h * factor, w * factor
    columns = columns or max(1, int(np.ceil(np.sqrt(n))))
    rows = -(-n // columns)
    canvas = torch.full((3, rows * (h + padding) + padding, columns * (w + padding) + padding), background)
    for i in range(n):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        canvas[:, top:top + h, left:left + w] = tiles[i]
    return canvas


def colorize(values: torch.Tensor, *, cmap: str = "inferno", vmin: float | None = None,
             vmax: float | None = None) -> torch.Tensor:
    """Maps ``(..., H, W)`` values through a matplotlib colormap to ``(..., 3, H, W)`` in [0, 1]."""
    from matplotlib import colormaps

    values = values.detach().float().cpu()
    low = values.min() if vmin is None else torch.tensor(vmin)
    high = values.max() if vmax is None else torch.tensor(vmax)
    scaled = ((values - low) / (high - low).clamp_min(1e-12)).clamp(0, 1)
    table = torch.from_numpy(colormaps[cmap](np.linspace(0, 1, 256))[:, :3]).float()
    rgb = table[(scaled * 255).round().long()]
    return rgb.movedim(-1, -3)


def overlay(image: torch.Tensor, heat: torch.Tensor, *, alpha: float = 0.55, cmap: str = "inferno",
            vmin: float | None = None, vmax: float | None = None) -> torch.Tensor:
    """Blends a heat map over an image.

    Args:
        image: ``(3, H, W)`` in [0, 1].
        heat: ``(h, w)`` values of any range; upsampled bilinearly to ``(H, W)``.
        alpha: opacity of the heat map.

    Returns:
        ``(3, H, W)`` image in [0, 1].
    """
    image = image.detach().float().cpu()
    heat = heat.detach().float().cpu()[None, None]
    heat = F.interpolate(heat, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (1 - alpha) * image + alpha * colorize(heat, cmap=cmap, vmin=vmin, vmax=vmax)


def side_by_side(images: list[torch.Tensor], *, padding: int = 4) -> torch.Tensor:
    """Places ``(3, H, W)`` images of equal height in a row."""
    height = max(im.shape[-2] for im in images)
    resized = [F.interpolate(im[None], size=(height, round(im.shape[-1] * height / im.shape[-2])),
                             mode="bilinear", align_corners=False)[0] if im.shape[-2] != height else im
               for im in images]
    gap = torch.ones(3, height, padding)
    parts = [p for im in resized for p in (im, gap)][:-1]
    return torch.cat(parts, dim=-1)


def picture(image: torch.Tensor, caption: str = "", **numbers) -> Picture:
    """Wraps a ``(3, H, W)`` tensor in [0, 1] as a :class:`Picture`."""
    return Picture(to_uint8(image), caption, numbers)


def draw_boxes(image: torch.Tensor, boxes: list[tuple[int, int, int, int]], colors: list[str],
               *, width: int = 2) -> torch.Tensor:
    """Draws ``(top, left, bottom, right)`` inclusive boxes on a ``(3, H, W)`` image; returns a copy."""
    from PIL import ImageDraw

    canvas = Image.fromarray(to_uint8(image))
    pen = ImageDraw.Draw(canvas)
    for (top, left, bottom, right), color in zip(boxes, colors):
        pen.rectangle([left, top, right, bottom], outline=color, width=width)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def outlined(image: torch.Tensor, mask: torch.Tensor, *, color: tuple[float, float, float] = (0.0, 1.0, 1.0),
             width: int = 1) -> torch.Tensor:
    """``(3, H, W)`` image with the border of ``mask`` ``(h, w)`` (resized to ``H x W``) drawn in ``color``."""
    inside = F.interpolate(mask.float()[None, None], size=image.shape[-2:], mode="nearest")[0, 0] > 0.5
    shrunk = -F.max_pool2d(-inside.float()[None, None], 2 * width + 1, stride=1, padding=width)[0, 0] > 0.5
    border = inside & ~shrunk
    return torch.where(border, torch.tensor(color).view(3, 1, 1), image)


def save_array(path: str | Path, **arrays: np.ndarray) -> Path:
    """Saves one array as ``.npy`` or several as ``.npz``, atomically."""
    path = Path(path)
    if path.suffix not in (".npy", ".npz") or (path.suffix == ".npy" and len(arrays) != 1):
        raise ConvscopeError(f"{path}: arrays are saved as .npy (one array) or .npz (several)")
    if not path.parent.exists():
        raise ConvscopeError(f"{path.parent}: no such folder for the output")
    handle, temporary = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            if path.suffix == ".npy":
                np.save(stream, next(iter(arrays.values())))
            else:
                np.savez(stream, **arrays)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save_json(path: str | Path, data) -> Path:
    """Writes ``data`` as indented JSON atomically (a temporary file, then a rename)."""
    import json

    path = Path(path)
    temporary = path.with_name(f".{path.name}.part")
    try:
        temporary.write_text(json.dumps(data, indent=1))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def figure_picture(figure, caption: str = "", **numbers) -> Picture:
    """Renders a matplotlib figure to a :class:`Picture` (and closes it)."""
    import matplotlib.pyplot as plt

    figure.canvas.draw()
    array = np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(figure)
    return Picture(array, caption, numbers)


def labelled(shown: Picture) -> Picture:
    """The picture with its caption written above it (a figure for reports and READMEs)."""
    import textwrap

    import matplotlib.pyplot as plt

    height, width = shown.array.shape[:2]
    canvas_width = max(width, 320)
    lines = textwrap.wrap(shown.caption, width=canvas_width // 7) or [""]
    title = 16 * len(lines) + 8
    figure = plt.figure(figsize=(canvas_width / 100, (height + title) / 100), dpi=100)
    axes = figure.add_axes(((1 - width / canvas_width) / 2, 0, width / canvas_width, height / (height + title)))
    axes.imshow(shown.array)
    axes.axis("off")
    figure.text(0.5, 1 - 4 / (height + title), "\n".join(lines), ha="center", va="top", fontsize=9)
    return figure_picture(figure, shown.caption, **shown.numbers)
