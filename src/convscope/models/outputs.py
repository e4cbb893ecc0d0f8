"""What a network returns, reduced to the one tensor every method reads, and the task it implies.

Networks return a tensor, a tuple or list (Ultralytics' ``(predictions, features)``, Hugging Face
with ``return_dict=False``), a dict (torchvision's segmenters: ``{"out": ..., "aux": ...}``) or a
Hugging Face ``ModelOutput`` (a dict too: ``logits``, ``logits_per_image``, ``image_embeds``,
``pooler_output``). :func:`select_output` finds the tensor that answers "what does the network
say about this image" the same way for all of them, and a :class:`~convscope.models.Model` can
name it instead (``output=KEY | INDEX | callable``). The task (classification, multi-label,
regression, segmentation, embedding) follows from that tensor's shape where it can, and can be
set where it cannot: a 4-D output is a segmentation, one value per image a regression, and a
vector per image a classification unless said to be multi-label or an embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Union

import torch

from convscope.errors import ConvscopeError, shorten

#: How a model names its output: a key (dict or attribute), an index (tuple or list), or a function.
OutputSpec = Union[str, int, Callable[[Any], torch.Tensor], None]
TASKS = ("classification", "multi-label", "regression", "segmentation", "detection", "embedding")
#: Keys tried in order in a dict or ModelOutput: torchvision's segmenters, then Hugging Face's heads.
KEYS = ("out", "logits", "logits_per_image", "image_embeds", "embeddings", "pooler_output", "last_hidden_state")


def select_output(output: Any, spec: OutputSpec = None) -> torch.Tensor:
    """The tensor methods read from a network's raw ``output`` (see the module docstring).

    Raises:
        ConvscopeError: ``spec`` names nothing there, or nothing in ``output`` is a tensor per image
            (a detector's list of dicts needs a box target).
    """
    if spec is not None:
        return _named(output, spec)
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        key = next((k for k in KEYS if isinstance(output.get(k), torch.Tensor)), None)
        key = key or next((k for k, v in output.items() if isinstance(v, torch.Tensor)), None)
        if key is not None:
            return output[key]
    elif isinstance(output, (tuple, list)):
        if output and all(isinstance(item, Mapping) for item in output):
            raise ConvscopeError("the network returns one dict per image (a detector's boxes); explain one "
                                 "box with a box target, or name a tensor with Model(output=...)")
        first = next((item for item in output if isinstance(item, torch.Tensor)), None)
        if first is not None:
            return first
    raise ConvscopeError(f"found no tensor in what the network returns ({_describe(output)}); name one with "
                         f"Model(output=KEY | INDEX | function)")


def infer_task(output: torch.Tensor) -> str:
    """The task an output's shape implies: ``(B, K, H, W)`` segmentation, ``(B,)`` or ``(B, 1)``
    regression, ``(B, K)`` classification (multi-label and embedding are set, not inferred)."""
    if output.dim() == 4:
        return "segmentation"
    if output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1):
        return "regression"
    return "classification"


def check_task(task: str | None) -> str | None:
    if task is not None and task not in TASKS:
        raise ConvscopeError(f"unknown task {shorten(str(task))!r}; accepted: {', '.join(TASKS)}")
    return task


def _named(output: Any, spec: OutputSpec) -> torch.Tensor:
    if callable(spec):
        found = spec(output)
    elif isinstance(spec, int):
        if not isinstance(output, (tuple, list)) or not -len(output) <= spec < len(output):
            raise ConvscopeError(f"output index {spec} is not there: the network returns {_describe(output)}")
        found = output[spec]
    elif isinstance(output, Mapping) and spec in output:
        found = output[spec]
    elif not isinstance(output, Mapping) and hasattr(output, spec):
        found = getattr(output, spec)
    else:
        raise ConvscopeError(f"output key {shorten(str(spec))!r} is not there: the network returns "
                             f"{_describe(output)}")
    if not isinstance(found, torch.Tensor):
        raise ConvscopeError(f"the output {shorten(str(spec))!r} names a {type(found).__name__}, not a tensor")
    return found


def _describe(output: Any) -> str:
    """A short description of a raw output: its type and its keys or items' types."""
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        return f"a {type(output).__name__} with keys {', '.join(map(str, list(output)[:8]))}"
    if isinstance(output, (tuple, list)):
        kinds = ", ".join(type(item).__name__ for item in output[:8])
        return f"a {type(output).__name__} of {len(output)} ({kinds})"
    return f"a {type(output).__name__}"
