"""Addressing layers by dotted name (``_blocks.3._bn1``), with ``@k`` for repeated calls and
``:input`` for what a module receives instead of what it returns (``fc:input``: the classifier's
input, however the network computed it)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from convscope.errors import ConvscopeError, unknown_choice


@dataclass(frozen=True)
class LayerRef:
    """A resolved layer: the name as given, its module, which call of it (0 = first), and whether its
    first input is meant instead of its output."""

    name: str
    module: nn.Module
    call: int
    input: bool = False


def resolve(net: nn.Module, name: str) -> LayerRef:
    """Finds the module named ``name`` (``path`` or ``path@k``) in ``net``.

    Raises:
        ConvscopeError: no such module; the message lists the closest valid names.
    """
    if not isinstance(name, str) or not name:
        raise ConvscopeError(f"a layer is named by a non-empty dotted string, got {name!r}")
    named, _, side = name.partition(":")
    if side not in ("", "input"):
        raise ConvscopeError(f"layer {name!r}: the only suffix after ':' is 'input' (the module's input)")
    path, _, call = named.partition("@")
    if call and not call.isdigit():
        raise ConvscopeError(f"layer {name!r}: the call after '@' must be a number, e.g. {path}@1")
    modules = dict(net.named_modules())
    if path not in modules or not path:
        raise unknown_choice("layer", path, [n for n in modules if n])
    return LayerRef(name, modules[path], int(call or 0), side == "input")


def conv_layers(net: nn.Module) -> list[str]:
    """Names of every ``nn.Conv2d`` in ``net``, in definition order."""
    return [name for name, module in net.named_modules() if isinstance(module, nn.Conv2d)]


def first_conv(net: nn.Module) -> str:
    """Name of the first ``nn.Conv2d`` of ``net``.

    Raises:
        ConvscopeError: the network has no 2-D convolution.
    """
    names = conv_layers(net)
    if not names:
        raise ConvscopeError("the model has no nn.Conv2d layer")
    return names[0]
