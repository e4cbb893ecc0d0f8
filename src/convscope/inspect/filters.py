"""Convolution kernels as pictures (Krizhevsky et al. 2012, fig. 3; Zeiler & Fergus 2014)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convscope.core.layers import conv_layers, first_conv, resolve
from convscope.core.render import Picture, grid, picture
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model


@dataclass
class Filters:
    """The kernels of one convolution.

    Attributes:
        layer: the layer's dotted name.
        weight: ``(out_channels, in_channels / groups, kh, kw)`` kernels (a detached copy).
    """

    layer: str
    weight: torch.Tensor

    def tiles(self, *, max_out: int = 64, max_in: int = 16) -> torch.Tensor:
        """Kernels as ``(N, 3|1, kh, kw)`` tiles in [0, 1], with 0.5 meaning a zero weight.

        RGB kernels (3 input channels) become one color tile per filter; otherwise each of the
        first ``max_out`` filters gets a row of its first ``max_in`` input kernels in gray.
        Each filter is scaled by its own largest absolute weight, so shape and sign show.
        """
        w = self.weight[:max_out]
        scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        w = 0.5 + 0.5 * w / scale
        if w.shape[1] == 3:
            return w
        return w[:, :max_in].reshape(-1, 1, *w.shape[-2:])

    def grid(self, *, max_out: int = 64, max_in: int = 16) -> Picture:
        """The kernels on one grid, each tile enlarged for viewing."""
        tiles = self.tiles(max_out=max_out, max_in=max_in)
        columns = None if self.weight.shape[1] == 3 else min(self.weight.shape[1], max_in)
        image = grid(tiles, columns=columns, tile_size=32, padding=2)
        o, i, kh, kw = self.weight.shape
        return picture(image, f"{self.layer}: {o} filters of {i}x{kh}x{kw}", layer=self.layer,
                       shape=[o, i, kh, kw])

    def _repr_png_(self) -> bytes:
        return self.grid()._repr_png_()


def filters(model: Model | nn.Module, layer: str | None = None) -> Filters:
    """The kernels of a convolution layer (the first one by default).

    Args:
        model: a Model or network.
        layer: dotted name of an ``nn.Conv2d`` (subclasses included).

    Returns:
        :class:`Filters`, whose ``.grid()`` is the picture.

    Raises:
        ConvscopeError: the layer is unknown or not a 2-D convolution.
    """
    net = as_model(model).net
    layer = layer or first_conv(net)
    module = resolve(net, layer).module
    if not isinstance(module, nn.Conv2d):
        raise ConvscopeError(f"layer {layer!r} is a {type(module).__name__}, not a Conv2d; "
                             f"convolutions: {', '.join(_some_convs(net))}")
    return Filters(layer, module.weight.detach().float().cpu().clone())


def _some_convs(net: nn.Module, shown: int = 6) -> list[str]:
    names = conv_layers(net)
    return names[:shown] + (["..."] if len(names) > shown else [])
