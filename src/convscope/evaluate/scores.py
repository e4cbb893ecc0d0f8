"""The model's score for each image's target on many changed copies: batched, gradient-free, on the
fast path (batch norms folded, channels-last on CPU). Every perturbation metric ends here.

A target is a class per image (a classifier: its probability, logit or whether it stays on top is
read) or an :class:`~convscope.core.objectives.Objective` read from the model's output (a task's
target: a region of a segmentation, a detector's box, a regression's value, a similarity)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from convscope.core.fastpath import fast_model, in_fast_layout
from convscope.core.hooks import frozen
from convscope.core.objectives import INPUT, OUTPUT, Objective
from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.model import Model

#: Copies per forward pass: small batches are fastest for mobile networks on a 2-core CPU (deletion on
#: EfficientNet-Lite0: 88 images/s at 4, 50 at 16; GPUs take more).
CPU_CHUNK, GPU_CHUNK = 4, 256
#: What a curve reads from the logits ``(N, K)`` for classes ``(N,)``.
KINDS = {
    "probability": lambda logits, classes: logits.softmax(-1).gather(1, classes[:, None])[:, 0],
    "logit": lambda logits, classes: logits.gather(1, classes[:, None])[:, 0],
    "correct": lambda logits, classes: (logits.argmax(-1) == classes).float(),
}
#: ``(B,)`` classes, or an objective of the model's output.
Target = torch.Tensor | Objective


def target_scores(model: Model, batches: Iterable[tuple[torch.Tensor, Target]], *,
                  kind: str = "probability") -> torch.Tensor:
    """``(N,)``: for each ``(images (n, C, H, W) in [0, 1], target)`` batch in turn, the model's score
    of each image's target, concatenated, on the CPU. ``target``: ``(n,)`` classes, read as ``kind``
    (:data:`KINDS`), or an objective of the output for these ``n`` images (copies image-major; its
    :attr:`~convscope.core.objectives.Objective.perturbed` form where it has one)."""
    if kind not in KINDS:
        raise unknown_choice("score", kind, KINDS)
    scores, fast = [], None
    with frozen(model.net), torch.inference_mode():
        for images, target in batches:
            images = images.to(model.device)
            fast = fast or fast_model(model, [], images)
            output = in_fast_layout(fast, lambda z: fast.run_accepted(fast, z), images)
            if isinstance(target, Objective):
                values = (target.perturbed or target)({OUTPUT: output, INPUT: images})
            else:
                values = KINDS[kind](output.float(), target.to(output.device))
            scores.append(values.float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def copy_scores(model: Model, copies: torch.Tensor, target: Target, *, kind: str = "probability") -> torch.Tensor:
    """``(B, k)``: the score of each image's target on its ``k`` changed copies ``(B, k, C, H, W)``,
    a few copies of one image per forward pass."""
    size = chunk_size(model)

    def batches():
        for i, mine in enumerate(copies):
            for first in range(0, len(mine), size):
                part = mine[first:first + size]
                yield part, one_target(target, i, len(part))
    return target_scores(model, batches(), kind=kind).view(copies.shape[:2])


def one_target(target: Target, index: int, copies: int) -> Target:
    """Image ``index``'s target, for a batch of ``copies`` changed copies of it."""
    if isinstance(target, Objective):
        return target.example(index)
    return target[index].expand(copies)


def check_target(target: Target, images: int, kind: str = "probability") -> None:
    """Raises a one-line ConvscopeError unless ``target`` is ``(images,)`` classes or an objective of
    the output alone, read as a score (``kind`` is for classes)."""
    if isinstance(target, Objective):
        inner = [layer for layer in target.layers if layer not in (OUTPUT, INPUT)]
        if inner:
            raise ConvscopeError(f"a metric reads the model's output; {target.name} reads inner layers "
                                 f"({', '.join(inner)}): explain a class or a task target instead")
        if kind != "probability":
            raise ConvscopeError(f"kind={kind!r} reads a class; a task target is scored by its objective "
                                 f"({target.name}): leave kind out")
    elif target.shape != (images,):
        raise ConvscopeError(f"classes must be one per image, ({images},); got {tuple(target.shape)}")


def chunk_size(model: Model) -> int:
    """Copies per forward pass on the model's device."""
    return GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK
