"""Which image sizes a network accepts, and the resize that makes any image one of them.

Some networks take one size only (a vision transformer's position embeddings, a Swin built for
224 px); others refuse images below a minimum (Inception-v3 below 75 px, AlexNet's pools). The
methods that change an image's size on the way — octaves, random scale transforms, DeepDream's
tiles, style transfer at its own resolution — hand the network an image it accepts: resized
(bilinear, differentiably) to the fixed size, or up to the minimum keeping the aspect ratio.
Gradients flow back through the resize to the image's own pixels.

The rule is found by trying blank images (a few forwards at small sizes, once per network), and
only for a network that has refused an image: the others never pay for it.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.hooks import frozen


@dataclass(frozen=True)
class SizeRule:
    """The sizes a network accepts: only ``fixed`` when given, else any with both sides >= ``minimum``."""

    fixed: tuple[int, int] | None
    minimum: int

    def size_for(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The accepted size closest to an image of size ``hw``."""
        if self.fixed is not None:
            return self.fixed
        shorter = min(hw)
        if shorter >= self.minimum:
            return tuple(hw)
        scale = self.minimum / shorter
        return tuple(max(self.minimum, math.ceil(side * scale)) for side in hw)


ANY_SIZE = SizeRule(None, 1)
_RULES: weakref.WeakKeyDictionary[nn.Module, SizeRule] = weakref.WeakKeyDictionary()


def known_rule(net: nn.Module) -> SizeRule | None:
    """The rule found for ``net`` earlier, if any (see :func:`size_rule`)."""
    return _RULES.get(net)


def size_rule(net: nn.Module, channels: int, input_size: tuple[int, int], device: torch.device) -> SizeRule:
    """The :class:`SizeRule` of ``net`` (taking ``channels``-channel images, trained at ``input_size``).

    A network that refuses even its input size gets :data:`ANY_SIZE` (nothing is resized; the
    method reports the fault)."""
    if net not in _RULES:
        _RULES[net] = _probe(net, channels, tuple(input_size), device)
    return _RULES[net]


def _probe(net: nn.Module, channels: int, input_size: tuple[int, int], device: torch.device) -> SizeRule:
    def works(side: int) -> bool:
        height, width = (max(1, round(s * side / min(input_size))) for s in input_size)
        try:
            net(torch.zeros(1, channels, height, width, device=device))
        except Exception:  # the network refuses this size
            return False
        return True

    with frozen(net), torch.no_grad():
        low, high = 8, min(input_size)  # sides of the shorter axis, keeping the input's aspect ratio
        if works(low):
            return SizeRule(None, 1)
        if not works(high):
            return ANY_SIZE
        if not works(high + 16):  # a fixed size (or a narrow set around it): the input size is safe
            return SizeRule(tuple(input_size), high)
        while high - low > 1:  # works(high), not works(low)
            middle = (low + high) // 2
            low, high = (low, middle) if works(middle) else (middle, high)
        return SizeRule(None, high)


def to_accepted(x: torch.Tensor, rule: SizeRule) -> torch.Tensor:
    """``(B, C, H, W)`` resized (bilinear, differentiable) to the size ``rule`` accepts; ``x`` itself
    when it is accepted already."""
    size = rule.size_for(tuple(x.shape[-2:]))
    if size == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
