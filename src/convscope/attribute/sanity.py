"""Sanity check for attribution methods (Adebayo et al. 2018, arXiv:1810.03292).

A map that explains the model should change when the model's learned weights are destroyed.
The top layers are re-initialized (cascading randomization) and the rank correlation between
the trained model's map and the randomized model's map is reported: near 1 means the method
is insensitive to the weights, i.e. it mostly shows the image, not the model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from convscope.attribute.saliency import saliency
from convscope.core.metrics import spearman
from convscope.models.model import Model, as_model


def randomized_top(model: Model | nn.Module, layers: int = 3, *, seed: int = 0) -> Model:
    """A copy of the model whose last ``layers`` parameterized modules are re-initialized."""
    model = as_model(model)
    net = copy.deepcopy(model.net)
    torch.manual_seed(seed)
    owners = [m for m in net.modules() if any(True for _ in m.parameters(recurse=False))]
    for module in owners[len(owners) - layers:]:
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return Model(net, f"{model.name} (top {layers} randomized)", model.input_size, model.mean, model.std,
                 model.labels, model.channels)


def sanity_check(model: Model | nn.Module, x: torch.Tensor, target, *, method: str, layers: int = 3,
                 seed: int = 0) -> float:
    """Spearman rank correlation between the map of the trained and of the randomized model.

    Args:
        target: the class to explain (the same class for both models).

    Returns:
        The mean correlation over the batch, in [-1, 1].
    """
    model = as_model(model)
    trained = saliency(model, x, target, method=method).map
    randomized = saliency(randomized_top(model, layers, seed=seed), x, target, method=method).map
    return sum(spearman(a, b) for a, b in zip(trained, randomized)) / len(x)
