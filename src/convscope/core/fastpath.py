"""The fastest stand-in for the user's network that proved itself here, for each method's runs.

Two stand-ins make the many forward and backward passes of attribution, optimization and the
dataset passes faster: the copy with batch norms and pads folded into convolutions
(:mod:`convscope.core.folding`) and, on CPU, channels-last weights and activations
(:mod:`convscope.core.layout`). Neither is used before it matched the original network's output
and input gradient in float64 on the host, device and input size where it runs
(:mod:`convscope.core.selfcheck`). The candidates, fastest first: the folded copy channels-last,
the original channels-last, the folded copy, the original. A single image runs as a pair (the
image twice) where only the pair's gradient is right (PyTorch's batch-norm backward at batch 1,
see :mod:`convscope.core.selfcheck`). Where nothing proves itself, the way closest to float64
runs, and the log says so.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import nn
from torch.utils._pytree import tree_map

from convscope.core.folding import folded_copy, original_of
from convscope.core.layout import channels_last
from convscope.core.selfcheck import Verdict, check
from convscope.models.model import Model

Result = TypeVar("Result")
log = logging.getLogger("convscope.selfcheck")
_REFUSED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # networks whose forward refused channels-last
_WARNED: set[Verdict] = set()


def fast_model(model: Model, reads: Iterable[str], x: torch.Tensor) -> Model:
    """``model`` with its network's folded copy when that proved itself here; else ``model``.

    Args:
        model: the model a method is about to run many times.
        reads: the layers the method reads (``name`` or ``name@k``), besides input and output.
        x: ``(B, C, H, W)`` pixels in [0, 1] like the method's; its first image is the probe.

    Returns:
        A :class:`Model` with the same preprocessing and labels; its network is the folded copy
        or the original.
    """
    folded = folded_copy(model, x)
    if folded is None or folded.net is None or any(name.split("@")[0] in folded.changed for name in reads):
        return model
    for layout in _layouts(model, x):
        verdict = check(model, folded.net, x, channels_last=layout, path=_path(True, layout))
        if verdict is None:
            return model
        if verdict.trusted_at(2):  # methods run batches of copies even for one image; a pair serves one
            return dataclasses.replace(model, net=folded.net)
    return model


def in_fast_layout(model: Model, run: Callable[[torch.Tensor], Result], x: torch.Tensor) -> Result:
    """``run(x)`` the fastest way that proved itself for ``model``'s network (see the module docstring):
    channels-last on CPU, or not; and a single image as a pair (the image twice, the first result
    kept) where only a pair gets the gradient right.

    Args:
        model: the model ``run`` calls (its network the original or a folded copy).
        run: a function of the ``(B, C, H, W)`` input whose tensors hold one row per image, that
            may be called twice (once more in the default layout if the network refuses channels-last).
        x: the input.

    Returns:
        ``run``'s result; its tensors may be channels-last (same values).
    """
    layout, paired = _way(model, x)
    if paired:
        result = _run(model, run, x.repeat(2, *([1] * (x.dim() - 1))), layout)
        return tree_map(lambda t: t[:1] if isinstance(t, torch.Tensor) and t.dim() and len(t) == 2 else t, result)
    return _run(model, run, x, layout)


def fast_layout(model: Model, x: torch.Tensor) -> torch.memory_format:
    """The memory layout to give input like ``x`` for ``model``: channels-last where
    :func:`in_fast_layout` would use it (for a caller that lays out its own input)."""
    return torch.channels_last if _way(model, x)[0] else torch.contiguous_format


def _run(model: Model, run: Callable[[torch.Tensor], Result], x: torch.Tensor, layout: bool) -> Result:
    if not layout:
        return run(x)
    try:
        with channels_last(model.net):
            return run(x.contiguous(memory_format=torch.channels_last))
    except RuntimeError as error:
        if "view size is not compatible" not in str(error):
            raise
        _REFUSED.add(model.net)
    return run(x)


def _way(model: Model, x: torch.Tensor) -> tuple[bool, bool]:
    """``(channels-last, as a pair)``: the first way that proved itself for batches like ``x``; where
    none did, the one closest to float64 (logged)."""
    original = dataclasses.replace(model, net=original_of(model.net))
    folded = original.net is not model.net
    tried: list[tuple[bool, Verdict]] = []
    for layout in _layouts(model, x):
        verdict = check(original, model.net, x, channels_last=layout, path=_path(folded, layout))
        if verdict is None:
            return False, False
        if verdict.trusted_at(len(x)):
            return layout, False
        tried.append((layout, verdict))
    if len(x) == 1:
        for layout, verdict in tried:
            if verdict.trusted_at(2):
                return layout, True
    layout, closest = min(tried, key=lambda item: (item[1].single if len(x) == 1 else item[1].batched)[1])
    if closest not in _WARNED:
        _WARNED.add(closest)
        log.warning("%s: no way of running the network matched float64 here; running the closest, %s",
                    model.name, closest)
    return layout, False


def _layouts(model: Model, x: torch.Tensor) -> list[bool]:
    """Channels-last first where it may help (on CPU), then the default layout."""
    cpu = x.device.type == "cpu" and x.dim() == 4 and model.net not in _REFUSED
    return [True, False] if cpu else [False]


def _path(folded: bool, layout: bool) -> str:
    return ", ".join(part for part, used in (("folded copy", folded), ("original", not folded),
                                              ("channels-last", layout)) if used)
