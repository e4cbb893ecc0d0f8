"""What the model says: top-k classes with probabilities."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from convscope.core.hooks import frozen
from convscope.models.model import Model, as_model


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float

    def as_dict(self) -> dict:
        return asdict(self)


def probabilities(model: Model | nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` images in [0, 1] -> ``(B, classes)`` softmax probabilities."""
    model = as_model(model)
    with frozen(model.net), torch.no_grad():
        return model(x.to(model.device)).float().softmax(dim=-1).cpu()


def classify(model: Model | nn.Module, x: torch.Tensor, *, top: int = 5) -> list[list[Prediction]]:
    """The ``top`` most probable classes of each image.

    Args:
        model: a Model or network.
        x: ``(B, C, H, W)`` images in [0, 1] at the model's input size.
        top: how many classes per image.

    Returns:
        For each image, ``top`` predictions, most probable first.
    """
    model = as_model(model)
    return top_predictions(model, probabilities(model, x), top=top)


def top_predictions(model: Model, probs: torch.Tensor, *, top: int = 5) -> list[list[Prediction]]:
    """``(B, classes)`` probabilities -> for each row its ``top`` classes, most probable first."""
    values, indices = probs.topk(min(top, probs.shape[-1]), dim=-1)
    return [[Prediction(int(i), model.label(int(i)), float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(values, indices)]
