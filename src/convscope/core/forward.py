"""Running a model for an objective: one forward pass that captures exactly what it reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from convscope.core.fastpath import fast_model, in_fast_layout
from convscope.core.hooks import Probe, frozen
from convscope.core.objectives import INPUT, OUTPUT, Objective
from convscope.models.model import Model


def read(model: Model, x: torch.Tensor, objective: Objective, *, leaves: Sequence[str] = ()
         ) -> dict[str, torch.Tensor]:
    """The activations ``objective`` reads for pixels ``x`` ``(B, C, H, W)`` in [0, 1].

    The forward stops at the deepest layer the objective reads unless it reads the logits
    (``"output"``); ``"input"`` is ``x`` itself. ``leaves`` start autograd afresh at those layers
    (see :class:`~convscope.core.hooks.Probe`). An image of a size the network refuses (a fixed-size
    transformer, below a minimum) goes in resized to one it takes (:meth:`Model.accepted`), so the
    gradient reaches the image's own pixels. Hooks are removed before returning; the returned
    tensors keep their graph.
    """
    x = x.to(model.device)  # a no-op (same tensor, same graph) when it is there already
    layers = [layer for layer in objective.layers if layer not in (OUTPUT, INPUT)]
    if not layers and OUTPUT not in objective.layers and not leaves:
        return {INPUT: x}
    def forward(seen: torch.Tensor) -> dict[str, torch.Tensor]:
        with Probe(model.net, layers, stop_early=OUTPUT not in objective.layers, leaves=leaves) as probe:
            return probe.forward(model, seen)
    acts = model.run_accepted(forward, x)  # the hooks are off while a refused size is looked into
    acts[INPUT] = x
    return acts


def score(model: Model, x: torch.Tensor, objective: Objective, *, leaves: Sequence[str] = ()) -> torch.Tensor:
    """``(B,)`` values of ``objective`` for pixels ``x`` (with the graph, unless under no_grad)."""
    return objective(read(model, x, objective, leaves=leaves))


@contextmanager
def copy_scorer(model: Model, objective: Objective,
                example: torch.Tensor) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Within the block, a function from changed copies ``(N, C, H, W)`` to their ``(N,)``
    objective values, without gradients, on the fast path (batch norms folded, the fast memory
    layout); ``example`` is a batch like the copies' images (the folding is checked on it)."""
    fast = fast_model(model, objective.layers, example)
    with frozen(fast.net), torch.no_grad():
        yield lambda copies: in_fast_layout(fast, lambda z: score(fast, z, objective), copies)
