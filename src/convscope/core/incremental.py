"""Incremental inference for many copies of one image that differ only in a small window.

Occlusion re-runs the network on hundreds of copies of an image, each with a patch changed.
As in Krypton (Nakandala, Kumar, Papakonstantinou, SIGMOD 2019), only the part of each layer's
output that the patch can reach (its projective field) needs recomputing; the rest equals the
unoccluded forward pass, which is computed once.

How: the unoccluded forward is traced once at the aten level, recording every op that depends
on the input, with its output. Replaying the trace for a batch of copies, each input-dependent
tensor is a :class:`Window` — per-copy position and values of the changed region over the
cached tensor. Convolutions compute exactly the output window that the changed input window
reaches, pointwise ops act on the window only, sums take the union of their inputs' windows,
and every other op (global pooling, the classifier, anything unknown) runs densely on
materialized tensors — so the result is exact, whatever the architecture.

``limit`` (a fraction of each layer's side) caps how far windows may grow: the approximate
"projective-field thresholding" of Krypton, trading exactness for speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

aten = torch.ops.aten

POINTWISE = {aten.hardtanh.default, aten.relu.default, aten.clamp.default, aten.sigmoid.default,
             aten.native_batch_norm.default, aten._native_batch_norm_legit_no_training.default,
             aten.sub.Tensor, aten.div.Tensor, aten.mul.Tensor, aten.add.Tensor, aten.silu.default,
             aten.hardswish.default, aten.gelu.default, aten.leaky_relu.default, aten.clone.default}
RESHAPES = {aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.expand.default}


@dataclass(frozen=True)
class _Ref:
    """A reference, inside a recorded op's arguments, to an input-dependent tensor."""

    node: int
    item: int | None = None


@dataclass
class _Node:
    func: object
    args: tuple
    kwargs: dict
    out: object


@dataclass
class Window:
    """Copies of a cached ``(1, C, H, W)`` tensor that differ from it only inside a window.

    Attributes:
        base: the unoccluded tensor.
        top, left: ``(N,)`` window position of each copy (may lie partly outside ``base``).
        values: ``(N, C, h, w)`` the window's contents in each copy.
    """

    base: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    values: torch.Tensor

    def crop(self, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``(N, C, h, w)`` contents of each copy at the given window; zero outside the tensor.

        Copies are made slice by slice: contiguous copies beat one gather with index grids.
        """
        if (h, w) == tuple(self.values.shape[-2:]) and torch.equal(top, self.top) and torch.equal(left, self.left):
            return self.values
        big_h, big_w = self.base.shape[-2:]
        small_h, small_w = self.values.shape[-2:]
        layout = torch.channels_last if self.values.is_contiguous(memory_format=torch.channels_last) \
            and not self.values.is_contiguous() else torch.contiguous_format
        out = torch.zeros(len(top), self.values.shape[1], h, w, dtype=self.values.dtype, device=self.values.device)
        out = out.contiguous(memory_format=layout)
        for i, (r, c, sr, sc) in enumerate(zip(top.tolist(), left.tolist(), self.top.tolist(), self.left.tolist())):
            y0, y1, x0, x1 = max(r, 0), min(r + h, big_h), max(c, 0), min(c + w, big_w)
            out[i, :, y0 - r:y1 - r, x0 - c:x1 - c] = self.base[0, :, y0:y1, x0:x1]
            y0, y1, x0, x1 = max(sr, r), min(sr + small_h, r + h), max(sc, c), min(sc + small_w, c + w)
            if y0 < y1 and x0 < x1:
                out[i, :, y0 - r:y1 - r, x0 - c:x1 - c] = self.values[i, :, y0 - sr:y1 - sr, x0 - sc:x1 - sc]
        return out

    def dense(self) -> torch.Tensor:
        """``(N, C, H, W)`` full copies."""
        zero = torch.zeros_like(self.top)
        return self.crop(zero, zero, *self.base.shape[-2:])


class _Recorder(TorchDispatchMode):
    """Records every op whose inputs depend on ``x`` during one forward pass."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.refs: dict[int, _Ref] = {id(x): _Ref(0)}
        self.nodes: list[_Node] = [_Node(None, (), {}, x)]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        leaves, _ = tree_flatten((args, kwargs))
        if any(isinstance(a, torch.Tensor) and id(a) in self.refs for a in leaves):
            index = len(self.nodes)
            swap = lambda a: self.refs.get(id(a), a) if isinstance(a, torch.Tensor) else a  # noqa: E731
            self.nodes.append(_Node(func, tree_map(swap, args), tree_map(swap, kwargs), out))
            items = out if isinstance(out, (tuple, list)) else [out]
            for i, tensor in enumerate(items):
                if isinstance(tensor, torch.Tensor):
                    self.refs[id(tensor)] = _Ref(index, i if isinstance(out, (tuple, list)) else None)
        return out


class IncrementalInference:
    """Runs ``run(x)`` on copies of one image changed in a window, recomputing only what changes.

    Args:
        run: the function to evaluate (e.g. the model with its normalization), batch-agnostic.
        x: ``(1, C, H, W)`` the unchanged image.
        limit: None for exact results; a fraction in (0, 1] caps each layer's window side.
        channels_last: keep 4-D tensors in channels-last layout (faster convolutions on CPUs).
    """

    def __init__(self, run, x: torch.Tensor, *, limit: float | None = None, channels_last: bool = False) -> None:
        recorder = _Recorder(x)
        with torch.no_grad(), recorder:
            self.output = run(x)
        self.limit = limit
        self.output_ref = recorder.refs.get(id(self.output))
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        convert = lambda t: _convert(t, self.layout)  # noqa: E731
        self.nodes = [_Node(n.func, tree_map(convert, n.args), tree_map(convert, n.kwargs), tree_map(convert, n.out))
                      for n in _fold_batch_norms(recorder.nodes)]

    def __call__(self, top: torch.Tensor, left: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Output of each copy: the image with ``values`` ``(N, C, h, w)`` pasted at ``(top, left)``."""
        values = values.contiguous(memory_format=self.layout)
        states: list = [Window(self.nodes[0].out, top, left, values)]
        with torch.no_grad():
            for node in self.nodes[1:]:
                states.append(self._step(node, states, len(top)))
        if self.output_ref is None:
            return self.output.expand(len(top), *self.output.shape[1:])
        return _dense(_item(states[self.output_ref.node], self.output_ref.item), len(top))

    def _step(self, node: _Node, states: list, count: int):
        if node.func is _ALIAS:
            return [states[node.args[0].node]]
        inputs = [_item(states[a.node], a.item) for a in tree_flatten((node.args, node.kwargs))[0]
                  if isinstance(a, _Ref)]
        windows = [s for s in inputs if isinstance(s, Window)]
        if len(windows) == len(inputs) and _spatial(node.out):
            if node.func is aten.convolution.default and not node.args[6]:
                return self._convolution(node, windows[0])
            if node.func is aten.constant_pad_nd.default and min(node.args[1]) >= 0:
                pad = list(node.args[1]) + [0, 0]
                return Window(node.out, windows[0].top + pad[2], windows[0].left + pad[0], windows[0].values)
            if node.func in POINTWISE and _same_size(windows, node) and _broadcastable(node):
                return self._pointwise(node, states, windows)
        return self._dense_op(node, states, count)

    def _convolution(self, node: _Node, window: Window) -> Window:
        _, weight, bias, stride, padding, dilation, _, _, groups = node.args
        kernel = weight.shape[-2:]
        out = _first(node.out)
        starts, sizes = [], []
        for axis, first in ((0, window.top), (1, window.left)):
            last = first + window.values.shape[-2 + axis] - 1
            s, p, d, k = stride[axis], padding[axis], dilation[axis], kernel[axis]
            low = torch.div(first + p - (k - 1) * d + s - 1, s, rounding_mode="floor").clamp_min(0)
            high = torch.div(last + p, s, rounding_mode="floor").clamp_max(out.shape[-2 + axis] - 1)
            start, size = self._fit(low, high, out.shape[-2 + axis])
            starts.append(start)
            sizes.append(size)
        in_top = starts[0] * stride[0] - padding[0]
        in_left = starts[1] * stride[1] - padding[1]
        in_h = (sizes[0] - 1) * stride[0] + (kernel[0] - 1) * dilation[0] + 1
        in_w = (sizes[1] - 1) * stride[1] + (kernel[1] - 1) * dilation[1] + 1
        patch = window.crop(in_top, in_left, in_h, in_w)
        values = F.conv2d(patch, weight, bias, stride, 0, dilation, groups)
        return Window(out, starts[0], starts[1], values)

    def _fit(self, low: torch.Tensor, high: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
        """One window size for all copies (the largest reach, or the limit), kept inside the tensor."""
        size = int((high - low + 1).max().clamp_min(1))
        if self.limit is not None:
            cap = max(1, math.ceil(self.limit * length))
            if size > cap:
                low = torch.div(low + high + 1 - cap, 2, rounding_mode="floor")
                size = cap
        size = min(size, length)
        return low.clamp(0, length - size), size

    def _pointwise(self, node: _Node, states: list, windows: list[Window]) -> Window:
        first = windows[0]
        h, w = first.values.shape[-2:]
        if len(windows) > 1:
            top, left, h, w = _union(windows, _first(node.out).shape[-2:])
        else:
            top, left = first.top, first.left

        def swap(a):
            return _item(states[a.node], a.item).crop(top, left, h, w) if isinstance(a, _Ref) else a
        result = node.func(*tree_map(swap, node.args), **tree_map(swap, node.kwargs))
        if isinstance(result, (tuple, list)):
            return [Window(b, top, left, r) if _spatial(b) else b for b, r in zip(node.out, result)]
        return Window(node.out, top, left, result)

    def _dense_op(self, node: _Node, states: list, count: int):
        def swap(a):
            return _dense(_item(states[a.node], a.item), count) if isinstance(a, _Ref) else a
        args = tree_map(swap, node.args)
        if node.func in RESHAPES:  # the trace's batch of 1 becomes the copies' count
            args = (args[0].contiguous(), [count, *args[1][1:]], *args[2:])
        return node.func(*args, **tree_map(swap, node.kwargs))


_ALIAS = object()  # a folded batch norm: its output is its input's (item 0)
_BATCH_NORMS = {aten.native_batch_norm.default: 7, aten._native_batch_norm_legit_no_training.default: 6}


def _fold_batch_norms(nodes: list[_Node]) -> list[_Node]:
    """Merges each eval-mode batch norm into the convolution feeding only it (one op instead of two).

    ``w' = w * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``:
    equal to the two ops up to float rounding.
    """
    uses: dict[int, int] = {}
    for node in nodes:
        for a in tree_flatten((node.args, node.kwargs))[0]:
            if isinstance(a, _Ref):
                uses[a.node] = uses.get(a.node, 0) + 1
    nodes = list(nodes)
    for i, node in enumerate(nodes):
        eps_at = _BATCH_NORMS.get(node.func)
        source = node.args[0] if eps_at else None
        if not isinstance(source, _Ref) or source.item is not None or uses.get(source.node) != 1:
            continue
        conv = nodes[source.node]
        training = node.func is aten.native_batch_norm.default and node.args[5]
        if conv.func is not aten.convolution.default or conv.args[6] or training or node.args[1] is None:
            continue
        gamma, beta, mean, var, eps = node.args[1], node.args[2], node.args[3], node.args[4], node.args[eps_at]
        scale = gamma / torch.sqrt(var + eps)
        weight = conv.args[1] * scale.view(-1, 1, 1, 1)
        bias = (conv.args[2] if conv.args[2] is not None else torch.zeros_like(mean)) - mean
        nodes[source.node] = _Node(conv.func, (conv.args[0], weight, bias * scale + beta, *conv.args[3:]),
                                   conv.kwargs, node.out[0])
        nodes[i] = _Node(_ALIAS, (source,), {}, node.out)
    return nodes


def _convert(value, layout: torch.memory_format):
    """Recorded 4-D constants and cached outputs in the compute layout."""
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() == 4:
        return value.contiguous(memory_format=layout)
    return value


def _item(state, item: int | None):
    return state if item is None else state[item]


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _spatial(out) -> bool:
    first = _first(out)
    return isinstance(first, torch.Tensor) and first.dim() == 4 and first.shape[0] == 1


def _same_size(windows: list[Window], node: _Node) -> bool:
    size = _first(node.out).shape[-2:]
    return all(w.base.shape[-2:] == size for w in windows)


def _broadcastable(node: _Node) -> bool:
    """Constant tensor arguments broadcast over space (per-channel statistics, scalars)."""
    constants = [a for a in tree_flatten((node.args, node.kwargs))[0] if isinstance(a, torch.Tensor)]
    return all(a.dim() < 2 or a.shape[-2:].numel() == 1 for a in constants)


def _dense(state, count: int) -> torch.Tensor:
    if isinstance(state, Window):
        return state.dense()
    return state


def _union(windows: list[Window], size) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    tops = torch.stack([w.top for w in windows])
    lefts = torch.stack([w.left for w in windows])
    bottoms = torch.stack([w.top + w.values.shape[-2] for w in windows])
    rights = torch.stack([w.left + w.values.shape[-1] for w in windows])
    top, left = tops.min(0).values, lefts.min(0).values
    h = min(int((bottoms.max(0).values - top).max()), size[0])
    w = min(int((rights.max(0).values - left).max()), size[1])
    return top.clamp(0, size[0] - h), left.clamp(0, size[1] - w), h, w
