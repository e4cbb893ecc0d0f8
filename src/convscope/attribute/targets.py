"""Turning what the user asks about (a class name, an index, a channel) into an Objective."""

from __future__ import annotations

import torch

from convscope.core.objectives import Objective, channel, class_logit, neuron
from convscope.errors import ConvscopeError
from convscope.inspect.predictions import probabilities
from convscope.models.model import Model


def class_indices(model: Model, x: torch.Tensor, target: int | str | torch.Tensor | None) -> torch.Tensor:
    """``(B,)`` class indices: the top class of each image when ``target`` is None, else the named one.

    Raises:
        ConvscopeError: an unknown class name (close names are suggested) or index.
    """
    if target is None:
        return probabilities(model, x).argmax(-1)
    if isinstance(target, torch.Tensor):
        return target.long().expand(len(x))
    if model.labels is not None:
        index = model.labels.index(target)
    elif str(target).isdigit():
        index = int(target)
    else:
        raise ConvscopeError(f"the model has no class names; give the target class as an index, not {target!r}")
    return torch.full((len(x),), index, dtype=torch.long)


def objective_for(model: Model, x: torch.Tensor, target: int | str | torch.Tensor | Objective | None = None, *,
                  layer: str | None = None, channel_index: int | None = None,
                  position: tuple[int, int] | None = None) -> Objective:
    """What to explain: an Objective as given, a unit or channel of ``layer``, or a class logit."""
    if isinstance(target, Objective):
        return target
    if channel_index is not None:
        if layer is None:
            raise ConvscopeError("a channel needs its layer: give --layer too")
        if position is not None:
            return neuron(layer, channel_index, *position)
        return channel(layer, channel_index)
    indices = class_indices(model, x, target)
    objective = class_logit(indices)
    if bool((indices == indices[0]).all()):
        objective.name = f"{model.label(int(indices[0]))} ({int(indices[0])})"
    return objective
