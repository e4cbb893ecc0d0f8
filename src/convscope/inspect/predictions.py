"""What the model says: top-k classes with probabilities."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from convscope.core.hooks import frozen
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model


#: What each task explains instead of a class, in one line (as the command line asks for it).
NOT_A_CLASSIFIER = {
    "segmentation": "explain a class over a region (--target region:CLASS, or region:CLASS@MASK.png)",
    "regression": "explain its output value (--target up or --target down)",
    "embedding": "explain the similarity to a reference (--target similar:IMAGE)",
    "detection": "explain one of its boxes (--target box:INDEX; convscope detect lists them)",
    "classification": "its output has no class axis; name the output tensor with --model-output",
}


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float

    def as_dict(self) -> dict:
        return asdict(self)


def probabilities(model: Model | nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` images in [0, 1] -> ``(B, classes)`` probabilities: softmax for a classifier,
    each class's sigmoid for a multi-label one.

    Raises:
        ConvscopeError: the model is not a classifier (its task, and what to explain instead).
    """
    model = as_model(model)
    with frozen(model.net), torch.no_grad():
        output = model(x.to(model.device)).float()
    task = model.task_of(output)
    if task == "multi-label":
        return output.sigmoid().cpu()
    if task != "classification" or output.dim() != 2:
        raise ConvscopeError(f"{model.name} is {article(task)} {task} model (output of shape {tuple(output.shape)}), not a "
                             f"classifier: {NOT_A_CLASSIFIER[task]}")
    return output.softmax(dim=-1).cpu()


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
