"""Where networks come from: a registry of names -> loaders, plus files and other libraries.

A model is named by a spec string:

* ``efficientnet_lite0`` — a registered name (``convscope models`` lists them);
* ``torchvision:resnet18`` / ``timm:resnet50`` — an architecture of those libraries, when installed;
* ``NAME=weights.pth`` — any of the above with weights from a state-dict file;
* ``weights.pth`` — a state-dict file whose keys fit one of the registered architectures;
* ``timm:NAME=random`` — the architecture alone, with random weights (seeded), labelled untrained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.huggingface import PREFIX as HF_PREFIX
from convscope.models.factory import build_from_factory, is_factory
from convscope.models.model import Model, as_model
from convscope.models.weights import load_weights, matches, read_state_dict

DEFAULT_MODEL = "efficientnet_lite0"
DEVICES = "auto, cpu, cuda, cuda:N or mps"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``build(state)`` returns a Model, with ``state`` None for its own weights."""

    name: str
    description: str
    build: Callable[[dict[str, torch.Tensor] | None], Model]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str):
    """Decorator that registers a builder under ``name``; names are unique."""
    def add(build: Callable[[dict[str, torch.Tensor] | None], Model]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, description, build)
        return build
    return add


def list_models() -> list[ModelSpec]:
    """Every registered model, in registration order."""
    from convscope.models import builtin  # noqa: F401  (registers the built-in models)

    return list(_REGISTRY.values())


def load_model(spec: str | nn.Module | Model = DEFAULT_MODEL, *, weights: str | Path | None = None,
               device: str | torch.device = "auto") -> Model:
    """Loads a network with its preprocessing and labels, in eval mode, on a device.

    Args:
        spec: a registered name, ``torchvision:NAME``, ``timm:NAME``, ``package.module:factory``
            (:mod:`convscope.models.factory`), a weights file, or
            ``NAME=FILE`` (``NAME=random`` for a torchvision or timm architecture with random
            weights); an ``nn.Module`` or :class:`Model` is passed through.
        weights: a state-dict file to load instead of the default weights.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        ConvscopeError: unknown name, unreadable or unfitting weights, unknown device.
    """
    target = resolve_device(device)
    if isinstance(spec, (nn.Module, Model)):
        return as_model(spec).to(target)
    from convscope.models.external import PREFIXES, RANDOM

    name, _, file = str(spec).partition("=")
    weights = weights or (file or None)
    if weights == RANDOM:
        if not name.startswith((*PREFIXES, HF_PREFIX)):
            raise ConvscopeError(f"random weights are for torchvision:NAME, timm:NAME and hf:NAME architectures; "
                                 f"{name!r} comes with its own weights")
        model = _build(name, RANDOM)
    elif not file and _looks_like_file(name):
        state = read_state_dict(name)
        name, weights = _architecture_of(state, name), None
        model = _build(name, state)
    else:
        model = _build(name, read_state_dict(weights) if weights else None)
    model.net.eval()
    return model.to(target)


def _looks_like_file(name: str) -> bool:
    return Path(name).suffix in (".pt", ".pth", ".bin", ".ckpt") or Path(name).is_file()


def _build(name: str, state: dict[str, torch.Tensor] | None) -> Model:
    from convscope.models import external, huggingface

    if name.startswith(HF_PREFIX):
        model = huggingface.build(name, random=isinstance(state, str))
        if isinstance(state, dict):
            with_weights(model.net, state, name)
        return model
    if name.startswith(external.PREFIXES):
        return external.build(name, state)
    if is_factory(name):
        model = build_from_factory(name)
        with_weights(model.net, state, name)
        return model
    specs = {s.name: s for s in list_models()}
    if name not in specs:
        raise unknown_choice("model", name, [*specs, "torchvision:NAME", "timm:NAME", "hf:NAME", "hf:FOLDER",
                                             "package.module:factory", "a weights file"])
    return specs[name].build(state)


def _architecture_of(state: dict[str, torch.Tensor], path: str) -> str:
    """Finds the registered architecture whose parameter names equal the file's."""
    for spec in list_models():
        model = spec.build(None)
        if matches(model.net, state):
            return spec.name
    raise ConvscopeError(f"{path}: no registered architecture has these weights' layer names; "
                         f"name it as ARCH={path} (e.g. torchvision:resnet18={path})")


def with_weights(net: nn.Module, state: dict[str, torch.Tensor] | None, source: str) -> nn.Module:
    """Loads ``state`` into ``net`` when given; used by every builder."""
    return load_weights(net, state, source) if state is not None else net


def resolve_device(device: str | torch.device) -> torch.device:
    """Turns ``auto``/``cpu``/``cuda[:N]``/``mps`` into a device that exists here.

    Raises:
        ConvscopeError: an unknown name, or a device this machine does not have.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConvscopeError(f"unknown device {device!r}; accepted: {DEVICES}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConvscopeError(f"device {device!r}: CUDA is not available on this machine; use cpu or auto")
    if target.type == "cuda" and target.index is not None and target.index >= torch.cuda.device_count():
        raise ConvscopeError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if target.type == "mps" and not torch.backends.mps.is_available():
        raise ConvscopeError(f"device {device!r}: MPS is not available on this machine; use cpu or auto")
    if target.type not in ("cpu", "cuda", "mps"):
        raise ConvscopeError(f"unknown device {device!r}; accepted: {DEVICES}")
    return target
