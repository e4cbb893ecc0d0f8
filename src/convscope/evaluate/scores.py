"""The model's score for each image's class on many changed copies: batched, gradient-free, on the
fast path (batch norms folded, channels-last on CPU). Every perturbation metric ends here."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from convscope.core.fastpath import fast_model, in_fast_layout
from convscope.core.hooks import frozen
from convscope.errors import unknown_choice
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


def class_scores(model: Model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                 kind: str = "probability") -> torch.Tensor:
    """``(N,)``: for each ``(images (n, C, H, W) in [0, 1], classes (n,))`` batch in turn, the
    model's ``kind`` (:data:`KINDS`) of each image's class, concatenated, on the CPU."""
    if kind not in KINDS:
        raise unknown_choice("score", kind, KINDS)
    read = KINDS[kind]
    scores, fast = [], None
    with frozen(model.net), torch.inference_mode():
        for images, classes in batches:
            images = images.to(model.device)
            fast = fast or fast_model(model, [], images)
            logits = in_fast_layout(fast, lambda z: fast.run_accepted(fast, z), images)
            scores.append(read(logits.float(), classes.to(logits.device)).cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def chunk_size(model: Model) -> int:
    """Copies per forward pass on the model's device."""
    return GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK
