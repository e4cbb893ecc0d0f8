"""Legends drawn into pictures: a label under each panel of a row, and under a map a colour bar with
its value range (zero marked on a signed, diverging scale). The library's pictures, and so the
command line's, the tour's and the explorer's, are laid out here, so a map read anywhere says what
its colours mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

#: Pixels of a colour bar strip (the bar, its numbers, the quantity's name) and of a label line.
BAR, LINE = 40, 16
INK = (31, 41, 51)


@dataclass(frozen=True)
class Scale:
    """What a map's colours mean: ``low`` and ``high`` at the colormap's ends, ``name`` the quantity
    (with its unit), ``clipped`` when values beyond the ends exist and are shown at the ends."""

    low: float
    high: float
    cmap: str = "inferno"
    name: str = ""
    clipped: bool = False

    @property
    def signed(self) -> bool:
        return self.low < 0 < self.high


@dataclass(frozen=True)
class Panel:
    """One image of a row: ``(3, H, W)`` in [0, 1], the label written under it, its colour scale."""

    image: torch.Tensor
    label: str = ""
    scale: Scale | None = None


def row(panels: list[Panel], *, padding: int = 4) -> torch.Tensor:
    """The panels side by side at one height, each with its colour bar (where it has a scale) and
    its label under it. Returns ``(3, H', W')`` in [0, 1]."""
    height = max(p.image.shape[-2] for p in panels)
    barred = any(p.scale is not None for p in panels)
    labelled = any(p.label for p in panels)
    columns = []
    for p in panels:
        image = _at_height(p.image.detach().float().cpu(), height)
        width = image.shape[-1]
        parts = [image]
        if barred:
            parts.append(colorbar(width, p.scale) if p.scale is not None else torch.ones(3, BAR, width))
        if labelled:
            parts.append(_text_strip(width, p.label))
        columns.append(torch.cat(parts, dim=-2))
    gap = torch.ones(3, columns[0].shape[-2], padding)
    return torch.cat([part for column in columns for part in (column, gap)][:-1], dim=-1)


def colorbar(width: int, scale: Scale) -> torch.Tensor:
    """A ``(3, BAR, width)`` strip: the colormap from ``scale.low`` to ``scale.high``, the two ends
    written under it (and 0 where the scale is signed), and under them the quantity's name."""
    from matplotlib import colormaps

    margin = 6
    bar_width = max(8, width - 2 * margin)
    colors = colormaps[scale.cmap](np.linspace(0, 1, bar_width))[:, :3]
    canvas = Image.new("RGB", (width, BAR), "white")
    bar = (np.repeat(colors[None], 9, axis=0) * 255).round().astype(np.uint8)
    canvas.paste(Image.fromarray(bar), (margin, 2))
    pen = ImageDraw.Draw(canvas)
    pen.rectangle([margin - 1, 1, margin + bar_width, 11], outline=(150, 160, 170))
    font = _font()
    low, high = _number(scale.low), _number(scale.high)
    if scale.clipped:
        low, high = (f"≤{low}" if scale.low != 0 else low), f"≥{high}"
    pen.text((margin, 13), low, fill=INK, font=font)
    pen.text((margin + bar_width, 13), high, fill=INK, font=font, anchor="ra")
    if scale.signed:
        zero = margin + round(bar_width * -scale.low / (scale.high - scale.low))
        pen.line([zero, 0, zero, 12], fill=INK, width=1)
        pen.text((zero, 13), "0", fill=INK, font=font, anchor="ma")
    if scale.name:
        pen.text((width / 2, 26), _fitted(pen, scale.name, width - 4, font), fill=(82, 96, 109), font=font,
                 anchor="ma")
    return _tensor(canvas)


def _text_strip(width: int, text: str) -> torch.Tensor:
    canvas = Image.new("RGB", (width, LINE), "white")
    pen = ImageDraw.Draw(canvas)
    font = _font()
    pen.text((width / 2, 2), _fitted(pen, text, width - 4, font), fill=INK, font=font, anchor="ma")
    return _tensor(canvas)


def _fitted(pen: ImageDraw.ImageDraw, text: str, room: float, font) -> str:
    """``text``, cut with an ellipsis to fit ``room`` pixels (empty if not even a letter fits)."""
    if pen.textlength(text, font=font) <= room:
        return text
    while text and pen.textlength(text + "…", font=font) > room:
        text = text[:-1]
    return text + "…" if text else ""


def _number(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}".replace("-", "−")


@cache
def _font() -> ImageFont.FreeTypeFont:
    """DejaVu Sans, which matplotlib ships (it has the signs the legends use: ≥, −, …)."""
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), 10)


def _at_height(image: torch.Tensor, height: int) -> torch.Tensor:
    if image.shape[-2] == height:
        return image
    width = round(image.shape[-1] * height / image.shape[-2])
    return F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False)[0].clamp(0, 1)


def _tensor(canvas: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255
