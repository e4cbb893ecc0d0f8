"""Objectives: differentiable scores to MAXIMIZE, one value per example, that compose.

An objective reads activations captured by :class:`~convscope.core.hooks.Probe` (its
``layers``; ``"output"`` means the model's logits) and returns a ``(B,)`` score. Attribution
reads the gradient of the score w.r.t. the input; optimization follows it. Only the
optimizer negates; objectives never do.

>>> objective = channel("_blocks.6", 7) - 1e-3 * neuron("_blocks.6", 7, 3, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

OUTPUT = "output"
Activations = Mapping[str, torch.Tensor]


class Objective:
    """A score to maximize, computed from activations.

    Args:
        fn: ``acts -> (B,)`` score.
        layers: the layers ``fn`` reads (``"output"`` for the logits).
        name: a readable description.
    """

    def __init__(self, fn: Callable[[Activations], torch.Tensor], layers: tuple[str, ...], name: str) -> None:
        self.fn, self.layers, self.name = fn, tuple(dict.fromkeys(layers)), name

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other: "Objective | float") -> "Objective":
        if isinstance(other, (int, float)):
            return Objective(lambda acts: self(acts) + other, self.layers, f"{self.name} + {other}")
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(lambda acts: self(acts) + other(acts), self.layers + other.layers,
                         f"{self.name} + {other.name}")

    __radd__ = __add__

    def __mul__(self, k: float) -> "Objective":
        if not isinstance(k, (int, float)):
            return NotImplemented  # Objective * Objective is not linear: a TypeError
        return Objective(lambda acts: k * self(acts), self.layers, f"{k} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return -1 * self

    def __sub__(self, other: "Objective | float") -> "Objective":
        return self + (-other)

    def __rsub__(self, other: float) -> "Objective":
        return (-self) + other


def class_logit(index: int | torch.Tensor) -> Objective:
    """The logit of a class; ``index`` may be a ``(B,)`` tensor, one class per example."""
    return Objective(lambda acts: _pick(acts[OUTPUT], index), (OUTPUT,), f"logit[{_show(index)}]")


def class_probability(index: int | torch.Tensor) -> Objective:
    """The softmax probability of a class."""
    return Objective(lambda acts: _pick(acts[OUTPUT].softmax(-1), index), (OUTPUT,), f"p[{_show(index)}]")


def class_log_probability(index: int | torch.Tensor) -> Objective:
    """The log-softmax of a class (cross-entropy's negative)."""
    return Objective(lambda acts: _pick(acts[OUTPUT].log_softmax(-1), index), (OUTPUT,),
                     f"log p[{_show(index)}]")


def channel(layer: str, index: int) -> Objective:
    """The mean activation of one channel of a ``(B, C, H, W)`` layer."""
    return Objective(lambda acts: acts[layer][:, index].flatten(1).mean(1), (layer,), f"{layer}[{index}]")


def neuron(layer: str, index: int, y: int | None = None, x: int | None = None) -> Objective:
    """One unit: channel ``index`` at position ``(y, x)`` (the center when omitted)."""
    def score(acts):
        a = acts[layer]
        if a.dim() == 2:
            return a[:, index]
        row = a.shape[-2] // 2 if y is None else y
        col = a.shape[-1] // 2 if x is None else x
        return a[:, index, row, col]
    return Objective(score, (layer,), f"{layer}[{index}, {y}, {x}]")


def custom(fn: Callable[[Activations], torch.Tensor], layers: tuple[str, ...] | list[str], name: str = "custom"
           ) -> Objective:
    """Any ``(B,)`` function of the captured ``layers``."""
    return Objective(fn, tuple(layers), name)


def _pick(values: torch.Tensor, index: int | torch.Tensor) -> torch.Tensor:
    if isinstance(index, torch.Tensor):
        return values.gather(1, index.to(values.device).view(-1, 1))[:, 0]
    return values[:, index]


def _show(index: int | torch.Tensor) -> str:
    return str(index.tolist()) if isinstance(index, torch.Tensor) else str(index)
