"""The fastest stand-in for the user's network that proved itself here, for each method's runs.

Two stand-ins make the many forward and backward passes of attribution, optimization and the
dataset passes faster: the copy with batch norms and pads folded into convolutions
(:mod:`convscope.core.folding`) and, on CPU, channels-last weights and activations
(:mod:`convscope.core.layout`). Neither is used before it matched the original network's output
and input gradient in float64 on the host, device and input size where it runs
(:mod:`convscope.core.selfcheck`). The candidates, fastest first: the folded copy channels-last,
the original channels-last, the folded copy, the original. Where none proves itself (the
original included, when a kernel of this PyTorch is wrong for it), the one closest to float64
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
    layouts = [True, False] if _on_cpu(x) else [False]
    for layout in layouts:
        verdict = check(model, folded.net, x, channels_last=layout, path=_path(True, layout))
        if verdict is None:
            return model
        if verdict.trusted:
            return dataclasses.replace(model, net=folded.net)
    return model


def in_fast_layout(model: Model, run: Callable[[torch.Tensor], Result], x: torch.Tensor) -> Result:
    """``run(x)``, with ``x`` and ``model``'s convolution weights channels-last on CPU when that
    layout proved itself for this network (see the module docstring).

    Args:
        model: the model ``run`` calls (its network the original or a folded copy).
        run: a function of the ``(B, C, H, W)`` input that may be called twice (once more in the
            default layout if the network refuses channels-last).
        x: the input.

    Returns:
        ``run``'s result; its tensors may be channels-last (same values).
    """
    if fast_layout(model, x) != torch.channels_last:
        return run(x)
    try:
        with channels_last(model.net):
            return run(x.contiguous(memory_format=torch.channels_last))
    except RuntimeError as error:
        if "view size is not compatible" not in str(error):
            raise
        _REFUSED.add(model.net)
    return run(x)


def fast_layout(model: Model, x: torch.Tensor) -> torch.memory_format:
    """The memory layout to give input like ``x`` for ``model``: channels-last where
    :func:`in_fast_layout` would use it (for a caller that lays out its own input)."""
    if _on_cpu(x) and model.net not in _REFUSED and _channels_last_wins(model, x):
        return torch.channels_last
    return torch.contiguous_format


def _channels_last_wins(model: Model, x: torch.Tensor) -> bool:
    """Whether channels-last proved itself for ``model.net``, or is closer to float64 than the
    default layout where neither did."""
    original = dataclasses.replace(model, net=original_of(model.net))
    folded = original.net is not model.net
    verdicts: list[Verdict | None] = []
    for layout in (True, False):
        verdict = check(original, model.net, x, channels_last=layout, path=_path(folded, layout))
        if verdict is None:
            return False
        if verdict.trusted:
            return layout
        verdicts.append(verdict)
    best = min(verdicts, key=lambda v: v.gradient_error)
    if best not in _WARNED:
        _WARNED.add(best)
        log.warning("%s: no way of running the network matched float64 here; running the closest, %s",
                    model.name, best)
    return best is verdicts[0]


def _on_cpu(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dim() == 4


def _path(folded: bool, layout: bool) -> str:
    return ", ".join(part for part, used in (("folded copy", folded), ("original", not folded),
                                              ("channels-last", layout)) if used)
