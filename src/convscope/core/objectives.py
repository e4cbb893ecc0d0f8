"""Objectives: differentiable scores to MAXIMIZE, one value per example, that compose.

An objective reads activations captured by :class:`~convscope.core.hooks.Probe` (its
``layers``; ``"output"`` means the model's logits, ``"input"`` the pixels ``(B, C, H, W)`` in
[0, 1] before any transform) and returns a ``(B,)`` score. Attribution reads the gradient of
the score w.r.t. the input; optimization follows it. Only the optimizer negates; objectives
never do, so penalties (L2, total variation, feature distances) are written as negative scores.

>>> objective = channel("_blocks.6", 7) - 1e-3 * neuron("_blocks.6", 7, 3, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from convscope.errors import ConvscopeError

OUTPUT = "output"
INPUT = "input"
Activations = Mapping[str, torch.Tensor]


class Objective:
    """A score to maximize, computed from activations.

    Args:
        fn: ``acts -> (B,)`` score.
        layers: the layers ``fn`` reads (``"output"`` for the logits).
        name: a readable description.
        select: ``i -> `` this objective for example ``i`` alone, for objectives with one index per
            example; the others are the same for every example.

    Attributes:
        marks: ``(image (3, H, W), i) -> image`` drawing what the objective is about on example
            ``i`` (a detector's boxes, the explained region), or None; pictures call it.
        perturbed: what methods and metrics that perturb the image read in its place, or None
            (itself): a box's score has D-RISE's similarity to the box, which finds the box's
            object among the perturbed copy's candidates.
    """

    marks: Callable[[torch.Tensor, int], torch.Tensor] | None = None
    perturbed: Objective | None = None

    def __init__(self, fn: Callable[[Activations], torch.Tensor], layers: tuple[str, ...], name: str,
                 select: Callable[[int], Objective] | None = None) -> None:
        self.fn, self.layers, self.name, self._select = fn, tuple(dict.fromkeys(layers)), name, select

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.fn(acts)

    def example(self, index: int) -> Objective:
        """The objective for example ``index`` of the batch alone (a batch of its copies)."""
        if self._select is None:
            return self
        chosen = self._select(index)
        chosen.perturbed = None if self.perturbed is None else self.perturbed.example(index)
        return chosen

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return Objective(lambda acts: self(acts) + other, self.layers, f"{self.name} + {other}",
                             None if self._select is None else lambda i: self.example(i) + other)
        if not isinstance(other, Objective):
            return NotImplemented
        either = self._select is not None or other._select is not None  # a sum keeps its parts' per-example form
        return Objective(lambda acts: self(acts) + other(acts), self.layers + other.layers,
                         f"{self.name} + {other.name}", (lambda i: self.example(i) + other.example(i)) if either
                         else None)

    __radd__ = __add__

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, (int, float)):
            return NotImplemented  # Objective * Objective is not linear: a TypeError
        return Objective(lambda acts: k * self(acts), self.layers, f"{k} * {self.name}",
                         None if self._select is None else lambda i: k * self.example(i))

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1 * self

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def log(self) -> Objective:
        """The log of a positive score (a probability, a box's similarity): where the score sits near
        0, as a box's objectness does on noise, its own gradient vanishes and the log's does not."""
        return Objective(lambda acts: self(acts).clamp_min(1e-30).log(), self.layers, f"log {self.name}",
                         None if self._select is None else lambda i: self.example(i).log())


def class_logit(index: int | torch.Tensor) -> Objective:
    """The logit of a class; ``index`` may be a ``(B,)`` tensor, one class per example."""
    return Objective(lambda acts: _pick(acts[OUTPUT], index), (OUTPUT,), f"logit[{_show(index)}]",
                     _selector(class_logit, index))


def class_probability(index: int | torch.Tensor) -> Objective:
    """The softmax probability of a class."""
    return Objective(lambda acts: _pick(acts[OUTPUT].softmax(-1), index), (OUTPUT,), f"p[{_show(index)}]",
                     _selector(class_probability, index))


def class_log_probability(index: int | torch.Tensor) -> Objective:
    """The log-softmax of a class (cross-entropy's negative)."""
    return Objective(lambda acts: _pick(acts[OUTPUT].log_softmax(-1), index), (OUTPUT,),
                     f"log p[{_show(index)}]", _selector(class_log_probability, index))


def channel(layer: str, index: int | torch.Tensor) -> Objective:
    """The mean activation of one channel of a ``(B, C, H, W)`` layer; ``index`` may be ``(B,)``."""
    return Objective(lambda acts: _pick(acts[layer].flatten(2).mean(2), index), (layer,), f"{layer}[{_show(index)}]",
                     _selector(lambda i: channel(layer, i), index))


def neuron(layer: str, index: int | torch.Tensor, y: int | None = None, x: int | None = None) -> Objective:
    """One unit: channel ``index`` (or ``(B,)`` channels) at ``(y, x)`` (the center when omitted)."""
    def score(acts):
        a = acts[layer]
        if a.dim() == 2:
            return _pick(a, index)
        row = a.shape[-2] // 2 if y is None else y
        col = a.shape[-1] // 2 if x is None else x
        _check_range(f"{layer} row", row, a.shape[-2])
        _check_range(f"{layer} column", col, a.shape[-1])
        return _pick(a[:, :, row, col], index)
    return Objective(score, (layer,), f"{layer}[{_show(index)}, {y}, {x}]",
                     _selector(lambda i: neuron(layer, i, y, x), index))


def layer_norm(layer: str, index: int | torch.Tensor | None = None) -> Objective:
    """Mean squared activation of a layer, or of its channel ``index`` (one, or a ``(B,)`` tensor:
    one per example), DeepDream's L2 objective: ``(a ** 2).mean()`` per example."""
    def score(acts):
        a = acts[layer]
        if index is not None:
            _check_range(f"{layer} channel", index, a.shape[1])
            if isinstance(index, torch.Tensor):
                chosen = index.to(a.device).view(-1).repeat_interleave(len(a) // index.numel())
                a = a[torch.arange(len(a), device=a.device), chosen]
            else:
                a = a[:, index]
        return a.pow(2).flatten(1).mean(1)
    return Objective(score, (layer,), f"|{layer}{'' if index is None else f'[{_show(index)}]'}|^2")


def feature_match(layer: str, target: torch.Tensor) -> Objective:
    """Minus the relative squared distance of a layer's code to ``target`` (Mahendran & Vedaldi):
    ``-|a - target|^2 / |target|^2`` per example; ``target`` is ``(B or 1, ...)`` like the layer."""
    target = target.detach()

    def score(acts):
        difference = (acts[layer] - target.to(acts[layer].device)).flatten(1).pow(2).sum(1)
        return -difference / target.flatten(1).pow(2).sum(1).clamp_min(1e-12)
    return Objective(score, (layer,), f"match {layer}")


def gram(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, C)`` Gram matrices (which channels fire together), divided by ``H*W``."""
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def gram_match(layer: str, target: torch.Tensor,
               transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Objective:
    """Minus the relative squared distance of a layer's Gram matrix to ``target`` ``(B or 1, C, C)``
    (Gatys et al.'s style term): ``-|G - T|^2 / |T|^2`` per example, where ``G`` is the Gram
    matrix of ``transform(a)`` (of ``a`` itself when None)."""
    target = target.detach()

    def score(acts):
        a = acts[layer] if transform is None else transform(acts[layer])
        difference = (gram(a) - target.to(a.device)).flatten(1).pow(2).sum(1)
        return -difference / target.flatten(1).pow(2).sum(1).clamp_min(1e-12)
    return Objective(score, (layer,), f"gram {layer}")


def diversity(layer: str, groups: torch.Tensor | None = None) -> Objective:
    """Minus each example's mean cosine similarity to the others' Gram matrices (Olah et al. 2017):
    maximizing it pushes a batch optimized for one target toward different solutions.

    Args:
        groups: ``(B,)`` group ids: examples are compared only within their group, and those with
            a negative id not at all (score 0); one group for the whole batch when None.
    """
    def score(acts):
        flat = torch.nn.functional.normalize(gram(acts[layer]).flatten(1), dim=1)
        ids = torch.zeros(len(flat), dtype=torch.long) if groups is None else groups.view(-1).long()
        same = (ids[:, None] == ids[None, :]) & (ids[:, None] >= 0)
        same = same.to(flat.device) & ~torch.eye(len(flat), dtype=torch.bool, device=flat.device)
        similarity = (flat @ flat.T) * same
        return -similarity.sum(1) / same.sum(1).clamp_min(1)
    return Objective(score, (layer,), f"diversity {layer}")


def direction(layer: str, target: torch.Tensor, *, cossim_power: float = 0.0) -> Objective:
    """How far a ``(B, C, h, w)`` layer's activation vectors point along ``target``, averaged over
    positions: the dot product with ``target``, times the cosine similarity to the power
    ``cossim_power`` (Olah et al. 2018: 1 or more favours the direction itself over sheer size).

    Args:
        target: ``(C,)`` one direction (a concept, an NMF factor), ``(B, C)`` one per example, or
            ``(1|B, C, h, w)`` a direction per position (a photo's activations: a caricature).
    """
    def score(acts):
        a = acts[layer]
        t = target.to(a)
        t = t.view(*t.shape, 1, 1) if t.dim() <= 2 else t
        t = t.view(1, *t.shape) if t.dim() == 3 else t
        if t.shape[-2:] != a.shape[-2:] and t.shape[-2:] != (1, 1):  # the image was padded or scaled
            t = torch.nn.functional.interpolate(t, size=a.shape[-2:], mode="bilinear", align_corners=False)
        if t.shape[1] != a.shape[1]:
            raise ConvscopeError(f"a direction of {t.shape[1]} channels for layer {layer!r}, which has {a.shape[1]}")
        dot = (a * t).sum(1)
        if cossim_power:
            cosine = dot / (a.norm(dim=1) * t.norm(dim=1)).clamp_min(1e-8)
            dot = dot * cosine.clamp_min(0.1) ** cossim_power
        return dot.flatten(1).mean(1)
    return Objective(score, (layer,), f"direction {layer}" + (f" (cos^{cossim_power:g})" if cossim_power else ""))


def interpolation(first: Objective, second: Objective, weights: torch.Tensor) -> Objective:
    """``(1 - w) * first + w * second`` with one weight per example (``weights`` ``(B,)`` in [0, 1]):
    a batch that walks from one objective to the other (neuron interaction)."""
    def score(acts):
        w = weights.to(acts[next(iter(acts))].device)
        return (1 - w) * first(acts) + w * second(acts)
    return Objective(score, first.layers + second.layers, f"{first.name} -> {second.name}")


def signed(objective: Objective, signs: torch.Tensor) -> Objective:
    """``objective`` times one sign per example (``signs`` ``(B,)``): -1 turns maximizing it into
    minimizing it (a negative visualization) for that example only."""
    def score(acts):
        values = objective(acts)
        return values * signs.to(values)
    return Objective(score, objective.layers, f"signed {objective.name}")


def l2(layer: str = INPUT, center: float | Sequence[float] = 0.5) -> Objective:
    """Minus the mean squared distance of a layer (by default the pixels) to ``center`` (a value,
    or one per channel): L2 decay."""
    def score(acts):
        a = acts[layer]
        c = torch.as_tensor(center, dtype=a.dtype, device=a.device)
        c = c.view(1, -1, *([1] * (a.dim() - 2))) if c.dim() else c
        return -(a - c).pow(2).flatten(1).mean(1)
    return Objective(score, (layer,), f"l2 {layer}")


def total_variation(layer: str = INPUT, beta: float = 2.0) -> Objective:
    """Minus the mean total variation ``(dx^2 + dy^2)^(beta/2)`` of a ``(B, C, H, W)`` tensor
    (Mahendran & Vedaldi's V^beta prior; the pixels by default)."""
    def score(acts):
        a = acts[layer]
        dy = a[..., 1:, :-1] - a[..., :-1, :-1]
        dx = a[..., :-1, 1:] - a[..., :-1, :-1]
        return -(dx.pow(2) + dy.pow(2) + 1e-8).pow(beta / 2).flatten(1).mean(1)
    return Objective(score, (layer,), f"tv {layer}")


def custom(fn: Callable[[Activations], torch.Tensor], layers: tuple[str, ...] | list[str], name: str = "custom"
           ) -> Objective:
    """Any ``(B,)`` function of the captured ``layers``."""
    return Objective(fn, tuple(layers), name)


def _pick(values: torch.Tensor, index: int | torch.Tensor) -> torch.Tensor:
    """``values[:, index]`` (one index, or one per example); an index out of range is a ConvscopeError.
    A batch of ``k`` changed copies of each example in turn (image-major, as the perturbation methods
    make) uses each example's index ``k`` times."""
    _check_range("channel or class index", index, values.shape[1])
    if isinstance(index, torch.Tensor):
        index = index.to(values.device).view(-1)
        if len(values) != len(index) and len(values) % len(index) == 0:
            index = index.repeat_interleave(len(values) // len(index))
        return values.gather(1, index.view(-1, 1))[:, 0]
    return values[:, index]


def _selector(make: Callable[[int | torch.Tensor], Objective], index: int | torch.Tensor
              ) -> Callable[[int], Objective] | None:
    """For an index per example, ``i -> make(index[i])``; None for one index shared by all."""
    if isinstance(index, torch.Tensor) and index.numel() > 1:
        return lambda i: make(index.view(-1)[i:i + 1])
    return None


def _check_range(what: str, index: int | torch.Tensor, count: int) -> None:
    low, high = (int(index.min()), int(index.max())) if isinstance(index, torch.Tensor) else (index, index)
    if low < 0 or high >= count:
        raise ConvscopeError(f"{what} {high if high >= count else low} is out of range; accepted: 0..{count - 1}")


def _show(index: int | torch.Tensor) -> str:
    if isinstance(index, torch.Tensor):
        return str(index.item() if index.numel() == 1 else index.tolist())
    return str(index)
