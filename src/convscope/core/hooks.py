"""Every hook convscope puts on a model lives here, always inside a context manager.

* :class:`Probe` captures the outputs of named layers in one forward pass, and can stop
  the forward as soon as the last of them has run.
* :func:`trace_calls` records every module call in order (layer listing, receptive fields,
  which layers folding can merge).
* :func:`replaced` swaps a layer's output for a function of it (ablations).
* :func:`frozen` puts a model in eval mode without parameter gradients, and restores it.

Hooks are acquired in ``__enter__`` and removed in ``__exit__``, so also when an exception
is raised; the captured tensors are dropped on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from convscope.core.layers import LayerRef, resolve
from convscope.errors import ConvscopeError


class _ForwardStopped(Exception):
    """Raised inside a hook once every requested layer is captured; caught by Probe.forward."""


class Probe:
    """Captures the outputs of several layers during a forward pass.

    Example:
        >>> with Probe(net, ["layer1", "layer2.0.relu@1"], stop_early=True) as probe:
        ...     acts = probe.forward(model, x)        # {name: (B, C, H, W) tensor}

    Args:
        net: the network to observe.
        layers: dotted names from ``net.named_modules()``; ``name@k`` means the k-th call of a
            module that runs several times in one forward (``name`` alone is its first call);
            ``name:input`` its (first) input instead of its output.
        stop_early: end the forward once every layer is captured (saves the rest of the net).
        detach: store detached tensors (no graph kept) instead of tensors with their graph.
        leaves: layers whose output is replaced by a detached copy that requires grad, so that
            autograd records the forward only from there on (gradients w.r.t. a layer, cheaply).

    A captured output is what the layer returned: when the forward goes on, the rest of the
    network runs on a copy, so an in-place op after the layer (``ReLU(inplace=True)``,
    ``out += identity``) changes neither the captured values nor a leaf.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str], *, stop_early: bool = False,
                 detach: bool = False, leaves: Sequence[str] = ()) -> None:
        self.net = net
        self.refs = [resolve(net, name) for name in dict.fromkeys([*layers, *leaves])]
        self.stop_early = stop_early
        self.detach = detach
        self.leaves = set(leaves)
        self.acts: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = {}
        self._handles: list = []

    def __enter__(self) -> "Probe":
        try:
            self._handles.append(self.net.register_forward_pre_hook(self._reset))
            for ref in self.refs:
                if ref.input:
                    self._handles.append(ref.module.register_forward_pre_hook(self._capture_input(ref)))
                else:
                    self._handles.append(ref.module.register_forward_hook(self._capture(ref)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()
        self.acts = {}

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _reset(self, net: nn.Module, inputs) -> None:
        self.acts = {}
        self._calls = {}

    def _capture(self, ref: LayerRef) -> Callable:
        def hook(module: nn.Module, inputs, output):
            calls = self._calls.get(ref.name, 0)
            self._calls[ref.name] = calls + 1
            if calls != ref.call or not isinstance(output, torch.Tensor):
                return None
            if ref.name in self.leaves:
                output = output.detach().requires_grad_(True)
            self.acts[ref.name] = output.detach() if self.detach else output
            if self.stop_early and len(self.acts) == len(self.refs):
                raise _ForwardStopped
            return output.clone()  # the network goes on with a copy: its in-place ops must not reach the capture
        return hook

    def _capture_input(self, ref: LayerRef) -> Callable:
        def hook(module: nn.Module, inputs):
            if not inputs:
                return None
            replaced = self._capture(ref)(module, inputs, inputs[0])
            return None if replaced is None else (replaced, *inputs[1:])
        return hook

    def forward(self, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Runs ``run(x)`` (the model, or the net itself) and returns ``{layer: output}``.

        Without ``stop_early`` the model's output is also returned, under ``"output"``.

        Raises:
            ConvscopeError: a requested layer did not run, or gave no tensor.
        """
        try:
            output = run(x)
            self.acts["output"] = output
        except _ForwardStopped:
            pass
        missing = [ref.name for ref in self.refs if ref.name not in self.acts]
        if missing:
            raise ConvscopeError(f"layer(s) {', '.join(missing)} did not run (or ran fewer times) in the "
                                 f"forward pass, or returned no tensor")
        return dict(self.acts)


def capture(run: Callable[[torch.Tensor], torch.Tensor], net: nn.Module, x: torch.Tensor,
            layers: Sequence[str], *, stop_early: bool = True, detach: bool = False) -> dict[str, torch.Tensor]:
    """One forward pass of ``run(x)`` returning ``{layer: output}`` for the ``layers`` of ``net``."""
    with Probe(net, layers, stop_early=stop_early, detach=detach) as probe:
        return probe.forward(run, x)


@dataclass
class Call:
    """One module call seen by :func:`trace_calls`: its name (``name@k`` when repeated), its
    positional inputs and its output."""

    name: str
    module: nn.Module
    output: object
    inputs: tuple = ()


@contextmanager
def trace_calls(net: nn.Module) -> Iterator[list[Call]]:
    """Records every module call of ``net`` (containers included) in the order they finish."""
    calls: list[Call] = []
    counts: dict[str, int] = {}
    handles = []

    def hook_for(name: str) -> Callable:
        def hook(module, inputs, output):
            k = counts.get(name, 0)
            counts[name] = k + 1
            calls.append(Call(f"{name}@{k}" if k else name, module, output, inputs))
        return hook

    try:
        for name, module in net.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook_for(name)))
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def replaced(net: nn.Module, layer: str, change: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Inside the block, ``layer``'s output (``name`` or ``name@k``) is replaced by ``change(output)``
    (which may hold more rows: the rest of the network runs on them, e.g. ablated copies)."""
    ref = resolve(net, layer)
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1
        return change(output) if calls[0] - 1 == ref.call else None
    reset = net.register_forward_pre_hook(lambda *_: calls.__setitem__(0, 0))
    handle = ref.module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        reset.remove()


@contextmanager
def frozen(net: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` inside the block; both restored exactly on exit.

    Attribution and optimization differentiate w.r.t. the input only, so no parameter
    ``.grad`` is ever created and batch-norm statistics never change.
    """
    modes = {module: module.training for module in net.modules()}
    flags = {parameter: parameter.requires_grad for parameter in net.parameters()}
    try:
        net.eval()
        for parameter in flags:
            parameter.requires_grad_(False)
        yield net
    finally:
        for module, mode in modes.items():
            module.training = mode
        for parameter, flag in flags.items():
            parameter.requires_grad_(flag)
