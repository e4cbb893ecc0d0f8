"""Reading state-dict files safely (``weights_only=True``) into a network."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import nn

from convscope.errors import ConvscopeError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Loads a state dict from a ``.pt``/``.pth`` file without unpickling code.

    Checkpoints that wrap the weights (``{"state_dict": ...}`` or ``{"model": ...}``) and
    ``DataParallel``'s ``module.`` prefixes are unwrapped.

    Raises:
        ConvscopeError: the file is missing or is not a weights-only PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConvscopeError(f"{path}: no such weights file")
    _refuse_programs(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign or unsafe files
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise ConvscopeError(f"{path}: not a weights-only PyTorch state dict ({first})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConvscopeError(f"{path}: expected a state dict (names -> tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _refuse_programs(path: Path) -> None:
    """A TorchScript or ``torch.export`` archive is a compiled program, not weights: it has no
    modules to hook and runs its own code, so it is refused in one line that says what to give."""
    if not zipfile.is_zipfile(path):
        return
    names = zipfile.ZipFile(path).namelist()
    kind = ("a TorchScript archive" if any(n.endswith("/constants.pkl") or "/code/__torch__/" in n for n in names)
            else "a torch.export program" if any(n.endswith("/archive_format") for n in names) else None)
    if kind:
        raise ConvscopeError(f"{path} is {kind}: convscope needs the network's Python modules (to hook its layers); "
                             "give the code that builds it, --model package.module:factory[=weights.pth]")


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Copies ``state`` into ``net``, refusing any missing, unexpected or mis-shaped tensor."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]
        raise ConvscopeError(f"{source}: the weights do not fit the architecture ({'; '.join(parts)})")
    net.load_state_dict(state)
    return net


def matches(net: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """True when ``state`` has exactly the keys of ``net`` (shapes may differ in the head)."""
    return set(net.state_dict()) == set(state)
