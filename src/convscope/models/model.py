"""The Model: a network plus what it takes to use it (input size, normalization, labels)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from convscope.core.images import fit
from convscope.core.sizes import known_rule, size_rule, to_accepted
from convscope.errors import ConvscopeError
from convscope.models.labels import Labels
from convscope.models.detectors import is_detector, run_network
from convscope.models.outputs import OutputSpec, check_task, infer_task, select_output

Result = TypeVar("Result")


@dataclass
class Model:
    """A network together with its preprocessing.

    Calling the model takes pixel-space images ``(B, C, H, W)`` in [0, 1] and returns logits
    ``(B, classes)``; the normalization ``(x - mean) / std`` happens inside, so users and
    methods never normalize by hand.

    Attributes:
        net: the user's network; it expects normalized input.
        name: a name for captions and reports.
        input_size: ``(height, width)`` the network was trained at.
        mean, std: per-channel normalization in [0, 1] units.
        labels: class names, or None when the network has none.
        channels: 3 for RGB networks, 1 for grayscale ones.
        output: which tensor of what the network returns the methods read (a key, an index or a
            function; None finds it: see :mod:`convscope.models.outputs`).
        task: classification, multi-label, regression, segmentation, detection or embedding; None
            infers it from the network (a detector known to :mod:`convscope.models.detectors`) or its
            output's shape (:meth:`task_of`).
    """

    net: nn.Module
    name: str = "model"
    input_size: tuple[int, int] = (224, 224)
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)
    labels: Labels | None = None
    channels: int = 3
    output: OutputSpec = None
    task: str | None = None

    def __post_init__(self) -> None:
        check_task(self.task)

    @property
    def device(self) -> torch.device:
        parameter = next(self.net.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` in [0, 1] -> the network's input scale."""
        x = self.to_channels(x)
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Makes RGB input gray for a 1-channel network, and gray input RGB for a 3-channel one."""
        if x.shape[1] == self.channels:
            return x
        if self.channels == 1:
            return x.mean(dim=1, keepdim=True)
        return x.expand(-1, self.channels, -1, -1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` pixels in [0, 1] -> the network's output tensor: ``(B, classes)`` logits
        for a classifier, ``(B, classes, h, w)`` for a segmenter, ``(B, D)`` for an embedding,
        ``(B, N, 5 + K)`` candidate boxes for a detector (:mod:`convscope.models.detectors`)."""
        return select_output(run_network(self.net, self.normalize(x)), self.output)

    def task_of(self, output: torch.Tensor) -> str:
        """The model's task: as set, or as ``output`` (what it returned) implies."""
        return self.task or ("detection" if is_detector(self.net) else infer_task(output))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resizes/crops ``(B, C, H, W)`` images to the input size and moves them to the device."""
        return fit(x, self.input_size).to(self.device)

    def accepted(self, x: torch.Tensor, *, refused: bool = False) -> torch.Tensor:
        """``(B, C, H, W)`` pixels resized (bilinear, differentiably) to a size the network takes: its
        fixed size, or up to its minimum (see :mod:`convscope.core.sizes`), once the network has
        refused an image (``refused``: it just did); ``x`` itself at the input size."""
        if tuple(x.shape[-2:]) == tuple(self.input_size):
            return x
        rule = size_rule(self.net, self.channels, self.input_size, self.device) if refused else known_rule(self.net)
        return x if rule is None else to_accepted(x, rule)

    def run_accepted(self, run: Callable[[torch.Tensor], Result], x: torch.Tensor) -> Result:
        """``run(self.accepted(x))``; when the network refuses that image, once more at a size it takes."""
        seen = self.accepted(x)
        try:
            return run(seen)
        except ConvscopeError:
            raise
        except Exception:  # the user's network refused this size: find the sizes it takes
            again = self.accepted(x, refused=True)
            if again.shape == seen.shape:
                raise
            return run(again)

    def label(self, index: int) -> str:
        return self.labels.name(index) if self.labels else str(index)

    def to(self, device: str | torch.device) -> "Model":
        self.net.to(device)
        return self


def as_model(model: Model | nn.Module) -> Model:
    """Accepts a :class:`Model` or any ``nn.Module``, which is taken to expect [0, 1] input with as
    many channels (1 or 3) as its first convolution, at 224 x 224 unless told otherwise."""
    if isinstance(model, Model):
        return model
    if isinstance(model, nn.Module):
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.in_channels if first is not None and first.in_channels in (1, 3) else 3
        return Model(net=model, name=type(model).__name__, mean=(0.0,) * channels, std=(1.0,) * channels,
                     channels=channels)
    raise ConvscopeError(f"expected a convscope Model or a torch.nn.Module, got {type(model).__name__}")
