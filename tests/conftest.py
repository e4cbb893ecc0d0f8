"""Shared fixtures, and a guard that fails any test leaving a hook on any module."""

from __future__ import annotations

import os
import weakref

import pytest
import torch
from torch import nn

import convscope as cs
from tests import torchvision_cpu  # noqa: F401 (before any torchvision import)

def _share_the_cores() -> None:
    """Under pytest-xdist, each worker (and every process it starts) takes its share of the cores,
    so that two workers on two cores do not each run two threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores()
_MODULES: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
_original_init = nn.Module.__init__


def _tracking_init(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    _MODULES.add(self)


nn.Module.__init__ = _tracking_init  # every module built during the session is checked


def hooks_left() -> list[str]:
    """Modules (and the global registry) that still carry hooks."""
    found = []
    for module in list(_MODULES):
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(module, kind, None):
                found.append(f"{type(module).__name__}.{kind}")
    from torch.nn.modules import module as module_globals
    for kind in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        if getattr(module_globals, kind, None):
            found.append(kind)
    return found


@pytest.fixture(autouse=True)
def no_hooks_left():
    yield
    assert hooks_left() == [], "hooks were left on modules"


@pytest.fixture(scope="session")
def lite0() -> cs.Model:
    return cs.load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def digits() -> cs.Model:
    return cs.load_model("digits_cnn", device="cpu")


@pytest.fixture(scope="session")
def cat(lite0) -> torch.Tensor:
    return cs.sample_image("cat", size=lite0.input_size)


def snapshot(net: nn.Module) -> dict:
    """Everything a method could change on a network."""
    return {
        "state": {k: v.detach().clone() for k, v in net.state_dict(keep_vars=True).items()},
        "training": {name: m.training for name, m in net.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in net.named_parameters()},
        "grad": {name: p.grad for name, p in net.named_parameters()},
    }


def assert_unchanged(before: dict, net: nn.Module) -> None:
    after = snapshot(net)
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(g is None for g in after["grad"].values()), "a .grad was created"
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"{key} changed"
        assert value.stride() == after["state"][key].stride(), f"{key}'s memory layout changed"
    assert hooks_left() == []
