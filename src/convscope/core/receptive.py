"""Analytic receptive fields, propagated through the real computation graph.

A forward pass runs under a dispatch mode that attaches to every tensor derived from the
input the receptive field of its units: along each spatial axis, unit ``i`` sees input
pixels ``[left + i * jump, left + i * jump + size - 1]``. Convolutions and pools grow it
(``size += (k - 1) * dilation * jump``, ``jump *= stride``, ``left -= padding * jump``),
padding shifts it, element-wise ops (residual sums) take the union of their inputs, and
anything that mixes all positions (global pooling, flatten, linear) sees the whole image.
Because the graph itself is followed, branches, reused modules and functional calls are
all accounted for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convscope.core.tracing import EagerTracer

aten = torch.ops.aten


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis: unit ``i`` covers ``[left + i*jump, left + i*jump + size - 1]``."""

    size: int
    jump: int
    left: int

    @property
    def start(self) -> float:
        """Center of the first unit, in input pixels (the 'start' of RF arithmetic)."""
        return self.left + (self.size - 1) / 2

    def window(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> "Axis":
        return Axis(self.size + (kernel - 1) * dilation * self.jump, self.jump * stride,
                    self.left - padding * self.jump)

    def shift(self, pad_before: int) -> "Axis":
        return Axis(self.size, self.jump, self.left - pad_before * self.jump)

    def union(self, other: "Axis") -> "Axis":
        left = min(self.left, other.left)
        right = max(self.left + self.size, other.left + other.size)
        return Axis(right - left, self.jump, left)

    def span(self, index: int) -> tuple[int, int]:
        """First and last input pixel seen by unit ``index`` (may lie outside the image)."""
        first = self.left + index * self.jump
        return first, first + self.size - 1


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a tensor's units; ``whole`` when each unit sees the entire input."""

    height: Axis
    width: Axis
    whole: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return self.height.size, self.width.size

    @property
    def jump(self) -> tuple[int, int]:
        return self.height.jump, self.width.jump

    @property
    def start(self) -> tuple[float, float]:
        return self.height.start, self.width.start

    @classmethod
    def of_whole_image(cls, size: tuple[int, int]) -> "ReceptiveField":
        """The field of units that see the entire ``(height, width)`` image (pooled, linear)."""
        return cls(Axis(size[0], 0, 0), Axis(size[1], 0, 0), whole=True)

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` inclusive input pixels of unit ``(y, x)``."""
        (top, bottom), (left, right) = self.height.span(y), self.width.span(x)
        return top, left, bottom, right


def _window(rf: ReceptiveField, kernel, stride, padding, dilation=(1, 1)) -> ReceptiveField:
    kernel, stride, padding, dilation = (_pair(v) for v in (kernel, stride or kernel, padding, dilation))
    return ReceptiveField(rf.height.window(kernel[0], stride[0], padding[0], dilation[0]),
                          rf.width.window(kernel[1], stride[1], padding[1], dilation[1]))


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = list(value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


class ReceptiveFieldTracer(EagerTracer):
    """Dispatch mode that maps every tensor computed from ``x`` to its :class:`ReceptiveField`."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.image_size = tuple(x.shape[-2:])
        self._fields: dict[int, ReceptiveField] = {id(x): ReceptiveField(Axis(1, 1, 0), Axis(1, 1, 0))}
        self._alive: list[torch.Tensor] = [x]  # keeps ids unique while tracing

    def field(self, tensor: torch.Tensor) -> ReceptiveField | None:
        """The receptive field of ``tensor``, or None if it does not depend on the input."""
        return self._fields.get(id(tensor))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [self._fields[id(a)] for a in _tensors(args) if id(a) in self._fields]
        if inputs:
            rf = self._propagate(func, args, inputs, out)
            for tensor in _tensors(out if isinstance(out, (tuple, list)) else (out,)):
                self._fields[id(tensor)] = rf
                self._alive.append(tensor)
        return out

    def _propagate(self, func, args, inputs: list[ReceptiveField], out) -> ReceptiveField:
        first = out[0] if isinstance(out, (tuple, list)) else out
        rf = inputs[0]
        if rf.whole or first.dim() != 4:
            return self._whole()
        if func is aten.convolution.default and not args[6]:
            return _window(rf, args[1].shape[-2:], args[3], args[4], args[5])
        if func in (aten.max_pool2d_with_indices.default, aten.max_pool2d.default):
            return _window(rf, args[1], _arg(args, 2, []), _arg(args, 3, 0), _arg(args, 4, 1))
        if func is aten.avg_pool2d.default:
            return _window(rf, args[1], _arg(args, 2, []), _arg(args, 3, 0))
        if func is aten.constant_pad_nd.default:
            pad = list(args[1]) + [0, 0, 0, 0]
            return ReceptiveField(rf.height.shift(pad[2]), rf.width.shift(pad[0]))
        carriers = [t for t in _tensors(args) if id(t) in self._fields]
        if all(t.dim() == 4 and t.shape[-2:] == first.shape[-2:] for t in carriers):
            return self._union(inputs)
        return self._whole()

    def _union(self, fields: list[ReceptiveField]) -> ReceptiveField:
        height, width = fields[0].height, fields[0].width
        for rf in fields[1:]:
            if rf.whole or rf.jump != (height.jump, width.jump):
                return self._whole()
            height, width = height.union(rf.height), width.union(rf.width)
        return ReceptiveField(height, width)

    def _whole(self) -> ReceptiveField:
        return ReceptiveField.of_whole_image(self.image_size)


def _arg(args, index: int, default):
    return args[index] if len(args) > index else default


def _tensors(values) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found
