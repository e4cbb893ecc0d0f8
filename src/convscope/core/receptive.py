"""Analytic receptive fields, propagated through the real computation graph.

A forward pass runs under a dispatch mode that attaches to every tensor derived from the
input the receptive field of its units: along each spatial axis, unit ``i`` sees input
pixels ``[left + i * jump, left + i * jump + size - 1]``. Convolutions and pools grow it
(``size += (k - 1) * dilation * jump``, ``jump *= stride``, ``left -= padding * jump``),
padding shifts it, resizes (nearest, bilinear, bicubic, antialiased) and folds scale the jump by
a fraction (kept exact, as :class:`~fractions.Fraction`; a unit's pixels are then rounded
outwards), element-wise ops (residual sums) take the union of their inputs, and
anything that mixes all positions (global pooling, flatten, linear) sees the whole image, as does
every op not known to keep positions apart (a recurrent layer over rows, a group norm): a field
reported too large is a safe answer, one reported too small is a wrong one.
Because the graph itself is followed, branches, reused modules and functional calls are
all accounted for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from convscope.core.tracing import EagerTracer, arg

aten = torch.ops.aten


Number = int | Fraction


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis: unit ``i`` covers ``[left + i*jump, left + i*jump + size - 1]``.

    After a resize the numbers are fractions: the bounds then hold for every unit, and a unit's
    pixels are those bounds rounded outwards (:attr:`pixels` of them, the same for every unit)."""

    size: Number
    jump: Number
    left: Number

    @property
    def exact(self) -> bool:
        return all(Fraction(v).denominator == 1 for v in (self.size, self.jump, self.left))

    @property
    def pixels(self) -> int:
        """How many input pixels a unit's span holds (one more than ``size`` rounded up when fractional)."""
        return int(self.size) if self.exact else math.ceil(self.size) + 1

    @property
    def start(self) -> float:
        """Center of the first unit, in input pixels (the 'start' of RF arithmetic)."""
        return float(self.left + Fraction(self.size - 1, 2))

    def reads(self, step: Number, low: Number, high: Number) -> "Axis":
        """The field of a tensor whose unit ``o`` reads this tensor's units ``[step*o + low, step*o + high]``."""
        return Axis(self.size + (high - low) * self.jump, self.jump * step, self.left + low * self.jump)

    def window(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> "Axis":
        return self.reads(stride, -padding, (kernel - 1) * dilation - padding)

    def shift(self, pad_before: int) -> "Axis":
        return Axis(self.size, self.jump, self.left - pad_before * self.jump)

    def union(self, other: "Axis") -> "Axis":
        left = min(self.left, other.left)
        right = max(self.left + self.size, other.left + other.size)
        return Axis(right - left, self.jump, left)

    def as_dict(self) -> dict[str, int | str]:
        """JSON-ready numbers: integers, or fractions written ``"p/q"``."""
        return {name: int(v) if Fraction(v).denominator == 1 else str(v)
                for name, v in (("size", self.size), ("jump", self.jump), ("left", self.left))}

    @classmethod
    def from_dict(cls, numbers: dict[str, int | str]) -> "Axis":
        return cls(**{name: Fraction(v) if isinstance(v, str) else v for name, v in numbers.items()})

    def span(self, index: int) -> tuple[int, int]:
        """First and last input pixel seen by unit ``index`` (may lie outside the image)."""
        first = math.floor(self.left + index * self.jump)
        return first, first + self.pixels - 1


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a tensor's units; ``whole`` when each unit sees the entire input."""

    height: Axis
    width: Axis
    whole: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """Input pixels a unit sees along each axis."""
        return self.height.pixels, self.width.pixels

    @property
    def jump(self) -> tuple[int | float, int | float]:
        """Input pixels between neighbouring units (a float after a resize by a fraction)."""
        return _plain(self.height.jump), _plain(self.width.jump)

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


def _plain(value: Number) -> int | float:
    return int(value) if Fraction(value).denominator == 1 else float(value)


#: Resizes: output unit ``o`` reads input units ``floor(x) + low`` to ``floor(x) + high``, where
#: ``x = scale * (o + shift) - shift'`` samples: ``(0, 0)`` at corners (nearest), ``(1/2, 1/2)`` at
#: pixel centers (bilinear, bicubic), ``(1/2, 0)`` for nearest-exact.
_HALF = Fraction(1, 2)
_RESIZES = {aten.upsample_nearest2d.default: (0, 0, 0, 0), aten._upsample_nearest_exact2d.default: (0, 0, _HALF, 0),
            aten.upsample_bilinear2d.default: (0, 1, _HALF, _HALF), aten.upsample_bicubic2d.default: (-1, 2, _HALF, _HALF),
            aten._upsample_bilinear2d_aa.default: (0, 1, _HALF, _HALF),
            aten._upsample_bicubic2d_aa.default: (-1, 2, _HALF, _HALF)}
_ANTIALIASED = {aten._upsample_bilinear2d_aa.default, aten._upsample_bicubic2d_aa.default}


def _resized(func, args, rf: ReceptiveField, before, after) -> ReceptiveField | None:
    """The field after ``F.interpolate`` (each mode that samples; ``area`` is an adaptive pool)."""
    if func not in _RESIZES:
        return None
    low, high, shift_out, shift_in = _RESIZES[func]
    nearest = shift_in == 0 and high == 0
    align_corners = not nearest and arg(args, 2, False)
    factors = list(args[2:4] if nearest else args[3:5]) + [None, None]
    axes = []
    for axis, n_in, n_out, factor in zip((rf.height, rf.width), before, after, factors):
        if align_corners:
            scale = Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)
            axes.append(axis.reads(scale, low - 1, high))  # x = scale * o; floor(x) lies in (x - 1, x]
            continue
        scale = 1 / Fraction(factor).limit_denominator(10**6) if factor else Fraction(n_in, n_out)
        offset = scale * shift_out - shift_in
        if func in _ANTIALIASED and scale > 1:  # the filter is stretched by the scale when shrinking:
            reach = scale * (high - low + 1) / 2  # units int(x - reach + 1/2) to int(x + reach + 1/2) - 1
            axes.append(axis.reads(scale, offset + shift_in - reach - _HALF, offset + shift_in + reach - _HALF))
        else:
            axes.append(axis.reads(scale, offset + low - 1, offset + high))
    return ReceptiveField(*axes)


def _unfolded_grid(size, kernel, dilation, padding, stride) -> tuple[int, int]:
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, d, p, s in zip(size, _pair(kernel), _pair(dilation), _pair(padding), _pair(stride)))


def _folded(rf: ReceptiveField, kernel, dilation, padding, stride) -> ReceptiveField:
    """``nn.Fold`` sums each output pixel ``y`` over the windows that cover it: positions ``p`` with
    ``p*stride - padding <= y <= p*stride - padding + (kernel - 1)*dilation``."""
    axes = []
    for axis, k, d, p, s in zip((rf.height, rf.width), *(_pair(v) for v in (kernel, dilation, padding, stride))):
        axes.append(axis.reads(Fraction(1, s), Fraction(p - (k - 1) * d, s), Fraction(p, s)))
    return ReceptiveField(*axes)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = list(value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


@dataclass(frozen=True)
class _Axes:
    """Where a tensor's two spatial axes lie: axis ``k`` has ``sizes[k]`` units, stepping through
    dimension ``dims[k]`` every ``inner[k]`` indices (``inner`` > 1 once a view merged it with the
    axes after it: ``(B, H*W, C)`` tokens, ``(B*H*W, C)`` rows of a linear layer)."""

    dims: tuple[int, int]
    inner: tuple[int, int]
    sizes: tuple[int, int]

    @property
    def standard(self) -> bool:
        """NCHW's last two dimensions, where convolutions and pools act."""
        return self.dims == (2, 3) and self.inner == (1, 1)

    def permuted(self, order) -> "_Axes":
        order = [d % len(order) for d in order]
        return _Axes(tuple(order.index(d) for d in self.dims), self.inner, self.sizes)

    def viewed(self, before: tuple[int, ...], after: tuple[int, ...]) -> "_Axes | None":
        """The axes after a view from shape ``before`` to ``after`` (row-major), None when lost."""
        dims, inner = [], []
        for dim, step, size in zip(self.dims, self.inner, self.sizes):
            stride = step * math.prod(before[dim + 1:])  # elements between neighbouring units, row-major
            for target in range(len(after)):
                below = math.prod(after[target + 1:])
                if stride % below == 0 and stride // below * size <= after[target] and \
                        after[target] % (stride // below * size) == 0:
                    dims.append(target)
                    inner.append(stride // below)
                    break
            else:
                return None
        return _Axes(tuple(dims), tuple(inner), self.sizes)


_SAME_LAYOUT = {aten.clone.default, aten.contiguous.default, aten._to_copy.default, aten.alias.default,
                aten.detach.default, aten.expand.default, aten.lift_fresh.default}
_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
#: Ops that act on each position alone (besides those PyTorch tags pointwise): per-channel norms with
#: fixed statistics, joins and splits (along channels; along space they change the shape, and the
#: field becomes whole), dropout, and reductions (over channels; over space the shape changes).
_POSITIONWISE = {aten.hardswish.default, aten.hardswish_.default, aten.native_batch_norm.default,
                 aten._native_batch_norm_legit_no_training.default, aten.cat.default, aten.stack.default,
                 aten.split.Tensor, aten.split_with_sizes.default, aten.slice.Tensor, aten.narrow.default,
                 aten.select.int, aten.unbind.int, aten.chunk.default, aten.native_dropout.default,
                 aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default}
#: Normalizations along one dimension: positions kept unless that dimension is a spatial one.
_ALONG_ONE_DIMENSION = {aten._softmax.default, aten._log_softmax.default, aten.softmax.int, aten.log_softmax.int}


class ReceptiveFieldTracer(EagerTracer):
    """Dispatch mode that maps every tensor computed from ``x`` to its :class:`ReceptiveField`.

    Besides the field it follows where each tensor's spatial axes are, through permutes,
    transposes and views (channels-last stages, a channel shuffle's split and merge of channels,
    tokens), so that channel-wise ops (LayerNorm over channels, linear layers on channels-last
    maps) keep the field, and only ops that mix positions (pooling over space, attention, a norm
    over space) make units see the whole image."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.image_size = tuple(x.shape[-2:])
        self._fields: dict[int, ReceptiveField] = {id(x): ReceptiveField(Axis(1, 1, 0), Axis(1, 1, 0))}
        self._axes: dict[int, _Axes] = {id(x): _Axes((2, 3), (1, 1), tuple(x.shape[-2:]))}
        self._alive: list[torch.Tensor] = [x]  # keeps ids unique while tracing

    def field(self, tensor: torch.Tensor) -> ReceptiveField | None:
        """The receptive field of ``tensor``, or None if it does not depend on the input."""
        return self._fields.get(id(tensor))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        carriers = [a for a in _tensors(args) if id(a) in self._fields]
        if carriers:
            rf, axes = self._propagate(func, args, carriers, out)
            for tensor in _tensors(out if isinstance(out, (tuple, list)) else (out,)):
                self._fields[id(tensor)] = rf
                if axes is not None:
                    self._axes[id(tensor)] = axes
                self._alive.append(tensor)
        return out

    def _propagate(self, func, args, carriers: list[torch.Tensor], out) -> tuple[ReceptiveField, _Axes | None]:
        first = out[0] if isinstance(out, (tuple, list)) else out
        source = carriers[0]
        rf, axes = self._fields[id(source)], self._axes.get(id(source))
        if rf.whole or axes is None:
            return self._whole()
        if func in (aten.permute.default, aten.transpose.int, aten.t.default):
            return rf, axes.permuted(_order(func, args, source.dim()))
        if func in _VIEWS:
            moved = axes.viewed(tuple(source.shape), tuple(first.shape))
            return (rf, moved) if moved is not None else self._whole()
        if func in _SAME_LAYOUT and first.shape == source.shape:
            return rf, axes
        if func is aten.native_layer_norm.default:  # normalizes over the last dimensions only
            return (rf, axes) if min(axes.dims) < source.dim() - len(args[1]) else self._whole()
        if func in (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default):
            return self._matmul(func, args, first)
        if axes.standard and first.dim() == 4:
            window = self._window(func, args, rf) or _resized(func, args, rf, source.shape[-2:], first.shape[-2:])
            if window is not None:
                return window, _Axes((2, 3), (1, 1), tuple(first.shape[-2:]))
        if func is aten.im2col.default and axes.standard:  # nn.Unfold: (B, C*k*k, L), positions row-major in L
            window = _window(rf, args[1], args[4], args[3], args[2])
            grid = _unfolded_grid(source.shape[-2:], *args[1:5])
            return window, _Axes((2, 2), (grid[1], 1), grid)
        if func is aten.col2im.default and axes == _Axes((2, 2), (axes.sizes[1], 1), axes.sizes):  # nn.Fold
            return _folded(rf, *args[2:6]), _Axes((2, 3), (1, 1), tuple(first.shape[-2:]))
        if func in _ALONG_ONE_DIMENSION and args[1] % source.dim() not in axes.dims:
            return self._same_positions(carriers, first)
        if torch.Tag.pointwise in func.tags or func in _POSITIONWISE:
            return self._same_positions(carriers, first)
        return self._whole()  # anything else may mix positions (a recurrent layer, attention, a group norm)

    def _window(self, func, args, rf: ReceptiveField) -> ReceptiveField | None:
        if func is aten.convolution.default and not args[6]:
            return _window(rf, args[1].shape[-2:], args[3], args[4], args[5])
        if func in (aten.max_pool2d_with_indices.default, aten.max_pool2d.default):
            return _window(rf, args[1], arg(args, 2, []), arg(args, 3, 0), arg(args, 4, 1))
        if func is aten.avg_pool2d.default:
            return _window(rf, args[1], arg(args, 2, []), arg(args, 3, 0))
        if func is aten.constant_pad_nd.default:
            pad = list(args[1]) + [0, 0, 0, 0]
            return ReceptiveField(rf.height.shift(pad[2]), rf.width.shift(pad[0]))
        return None

    def _matmul(self, func, args, out: torch.Tensor) -> tuple[ReceptiveField, _Axes | None]:
        """A product over the last dimension of its (first) operand keeps the positions of the others:
        a linear layer on channels-last maps or token rows; a product with another input-dependent
        operand (attention) mixes positions."""
        operands = [a for a in args if isinstance(a, torch.Tensor)]
        left, right = (operands[-2], operands[-1])
        if id(right) in self._fields and id(left) in self._fields:
            return self._batched(left, right, out)
        if id(right) in self._fields or id(left) not in self._fields:
            return self._whole()
        axes = self._axes.get(id(left))
        if axes is None or left.dim() - 1 in axes.dims:
            return self._whole()
        return self._fields[id(left)], axes

    def _batched(self, left: torch.Tensor, right: torch.Tensor, out: torch.Tensor) -> tuple[ReceptiveField, _Axes | None]:
        """A product of two input-dependent operands keeps positions when both hold them in the same
        batch dimension (attention within each position's own window: outlook attention); else it mixes."""
        axes = self._axes.get(id(left))
        if axes is None or axes != self._axes.get(id(right)) or max(axes.dims) >= out.dim() - 2:
            return self._whole()
        return self._union([self._fields[id(left)], self._fields[id(right)]]), axes

    def _same_positions(self, carriers: list[torch.Tensor], out: torch.Tensor) -> tuple[ReceptiveField, _Axes | None]:
        """Element-wise ops (residual sums, gates, channel-wise norms) and joins along channels: the
        union of the inputs' fields, when every input has its positions where the output has them."""
        axes = self._axes.get(id(carriers[0]))
        alike = all(self._axes.get(id(t)) == axes and t.dim() == out.dim() and
                    all(t.shape[d] == out.shape[d] for d in axes.dims) for t in carriers)
        if not alike:
            return self._whole()
        return self._union([self._fields[id(t)] for t in carriers]), axes

    def _union(self, fields: list[ReceptiveField]) -> ReceptiveField:
        height, width = fields[0].height, fields[0].width
        for rf in fields[1:]:
            if rf.whole or rf.jump != (height.jump, width.jump):
                return ReceptiveField.of_whole_image(self.image_size)
            height, width = height.union(rf.height), width.union(rf.width)
        return ReceptiveField(height, width)

    def _whole(self) -> tuple[ReceptiveField, None]:
        return ReceptiveField.of_whole_image(self.image_size), None


def _order(func, args, dims: int) -> list[int]:
    """The dimension order a permute, transpose or ``t`` produces."""
    if func is aten.permute.default:
        return list(args[1])
    order = list(range(dims))
    first, second = (args[1] % dims, args[2] % dims) if func is aten.transpose.int else (0, 1)
    order[first], order[second] = order[second], order[first]
    return order



def _tensors(values) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found
