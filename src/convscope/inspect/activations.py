"""Per-channel activation maps of a layer for an image (Yosinski et al. 2015, 'live' view)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convscope.core.hooks import capture, frozen
from convscope.core.maps import as_maps
from convscope.core.render import Picture, grid, overlay, picture
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model


@dataclass
class Activations:
    """One layer's response to a batch of images.

    Attributes:
        layer: the layer's dotted name.
        maps: ``(B, C, h, w)`` activations (detached, on the CPU).
        images: ``(B, 3, H, W)`` the input images in [0, 1], for overlays.
    """

    layer: str
    maps: torch.Tensor
    images: torch.Tensor

    def strength(self, index: int = 0) -> torch.Tensor:
        """``(C,)`` mean activation of each channel for image ``index``."""
        return self.maps[index].mean(dim=(-2, -1))

    def order(self, index: int = 0) -> torch.Tensor:
        """``(C,)`` channel indices, strongest first."""
        return torch.argsort(self.strength(index), descending=True, stable=True)

    def grid(self, index: int = 0, *, max_channels: int = 64, start: int = 0) -> Picture:
        """Channels' maps, strongest first (``max_channels`` of them from rank ``start``), gray on
        one scale shared by all the layer's channels: black is the layer's lowest value, white its
        highest (``numbers["low"]``, ``numbers["high"]``)."""
        ranked = self.order(index)
        order = ranked[start:start + max_channels]
        if not len(order):
            raise ConvscopeError(f"layer {self.layer!r} has {len(ranked)} channels; start must be below that, "
                                 f"not {start}")
        low, high = self.maps[index].min(), self.maps[index].max()
        tiles = ((self.maps[index, order] - low) / (high - low).clamp_min(1e-12))[:, None]
        image = grid(tiles, tile_size=48, padding=2, background=0.3)
        shown = f"{start + 1}-{start + len(order)}" if start or len(order) < len(ranked) else "all"
        return picture(image, f"{self.layer}: channels ranked {shown} of {len(ranked)}, strongest first",
                       layer=self.layer, channels=order.tolist(), strength=self.strength(index)[order].tolist(),
                       low=float(low), high=float(high))

    def overlay(self, channel: int, index: int = 0) -> Picture:
        """One channel's map, upsampled and blended over the image."""
        if not 0 <= channel < self.maps.shape[1]:
            raise ConvscopeError(f"channel {channel} is out of range for layer {self.layer!r}; "
                                 f"accepted: 0..{self.maps.shape[1] - 1}")
        heat = self.maps[index, channel]
        image = overlay(self.images[index], heat)
        mean = float(heat.mean())
        return picture(image, f"{self.layer} channel {channel} (mean activation {mean:.3g})",
                       layer=self.layer, channel=channel, mean=mean, min=float(heat.min()), max=float(heat.max()))

    def _repr_png_(self) -> bytes:
        return self.grid()._repr_png_()


def activations(model: Model | nn.Module, x: torch.Tensor, layer: str) -> Activations:
    """Captures a layer's output for a batch of images, stopping the forward at that layer.

    Args:
        model: a Model or network.
        x: ``(B, C, H, W)`` images in [0, 1] (see :meth:`Model.prepare`).
        layer: dotted name of a layer whose output reads as maps: ``(B, C, h, w)``, a channels-last
            ``(B, h, w, C)`` stage or ``(B, prefix + h*w, D)`` tokens (:mod:`convscope.core.maps`).

    Returns:
        :class:`Activations`; ``.grid()`` and ``.overlay(channel)`` are pictures.
    """
    model = as_model(model)
    x = x.to(model.device)
    with frozen(model.net), torch.no_grad():
        seen, output = model.run_accepted(lambda seen: (seen, capture(model, model.net, seen, [layer],
                                                                      detach=True)[layer]), x)
    maps = as_maps(output, tuple(seen.shape[-2:]))
    if maps is None:
        raise ConvscopeError(f"layer {layer!r} gives shape {tuple(output.shape[1:])}, not (C, h, w) maps (nor "
                             f"channels-last maps or tokens on a grid); choose a convolutional or transformer block")
    return Activations(layer, maps.float().cpu(), model.to_channels(x).float().cpu().expand(-1, 3, -1, -1))
