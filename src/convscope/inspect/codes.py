"""Codes: a layer's (pooled) output for every image of a dataset, written to disk as it goes.

The default layer is the penultimate one, the vector the classifier reads (Krizhevsky et al.
2012 showed that images close in this space look alike to the network). The run's folder
holds the chunks (resumable, see :mod:`convscope.data.results`) and, once all are done,
``codes.npy`` ``(N, D)`` float32, ``indices.npy`` ``(N,)`` dataset indices and ``labels.npy``
``(N,)`` (-1 when unlabeled), written chunk by chunk so memory stays flat for any N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convscope.core.hooks import frozen, trace_calls
from convscope.core.layers import resolve
from convscope.data.datasets import ImageDataset, open_dataset
from convscope.data.distributed import Ranks
from convscope.data.loader import Batch, Failure
from convscope.data.passes import run_pass
from convscope.data.results import ChunkStore
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model

FILES = ("codes", "indices", "labels")


@dataclass
class Codes:
    """The codes of a dataset.

    Attributes:
        layer: the layer they come from.
        codes: ``(N, D)`` float32, one row per readable image (memory-mapped from disk).
        indices: ``(N,)`` the dataset index of each row.
        labels: ``(N,)`` class indices, -1 where the dataset has none.
        classes: the dataset's class names, or None.
        failures: the images that could not be read.
    """

    layer: str
    codes: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    classes: list[str] | None
    failures: list[Failure]


def penultimate_layer(model: Model | nn.Module) -> str:
    """The layer whose output the last linear layer (or 1x1 convolution on a 1x1 map) reads, found in
    one forward of a random image:
    the last module call before it whose output holds exactly that input (``avgpool``, a dropout);
    where the network computes it with functional calls (DenseNet's ``relu`` and pooling, a
    transformer's class-token pick), the linear layer's own input, ``NAME:input``.

    Raises:
        ConvscopeError: the model ends in no linear layer (then a layer must be named).
    """
    model = as_model(model)
    x = torch.rand(1, model.channels, *model.input_size, generator=torch.Generator().manual_seed(0))
    with frozen(model.net), torch.no_grad(), trace_calls(model.net) as calls:
        model(x.to(model.device))
        linear = [i for i, call in enumerate(calls) if _classifier(call) and call.inputs]
        if linear:
            classifier = calls[linear[-1]]
            code = classifier.inputs[0]
            for call in reversed(calls[:linear[-1]]):
                output = call.output
                if isinstance(output, torch.Tensor) and output.numel() == code.numel() and \
                        torch.equal(output.reshape(code.shape), code):
                    return call.name
            return f"{classifier.name}:input"
    names = [call.name for call in calls]
    raise ConvscopeError("the model has no final linear layer to take codes before; name a layer "
                         f"(valid: {', '.join(names[-8:])} ...)")


def _classifier(call) -> bool:
    """A linear layer, or a 1x1 convolution on a 1x1 map (DLA's and SqueezeNet-style heads)."""
    if isinstance(call.module, nn.Linear):
        return True
    return isinstance(call.module, nn.Conv2d) and call.module.kernel_size == (1, 1) and \
        isinstance(call.output, torch.Tensor) and call.output.dim() == 4 and call.output.shape[-2:] == (1, 1)


def pooled(output: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, C)`` by averaging over positions; ``(B, ...)`` -> ``(B, D)``."""
    return output.mean(dim=(-2, -1)) if output.dim() == 4 else output.flatten(1)


class _Rows:
    """Reducer that keeps each image's pooled code of ``layer``."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.parts: list[tuple[torch.Tensor, ...]] = []

    def add(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        self.parts.append((batch.indices, batch.labels, pooled(outputs[self.layer]).float().cpu()))

    def finish(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return {"indices": np.zeros(0, np.int64), "labels": np.zeros(0, np.int64),
                    "codes": np.zeros((0, 0), np.float32)}
        indices, labels, codes = (torch.cat(column).numpy() for column in zip(*self.parts))
        self.parts = []
        return {"indices": indices, "labels": labels, "codes": codes}


def extract_codes(model: Model | nn.Module, dataset: str | Path | ImageDataset, folder: str | Path, *,
                  layer: str | None = None, chunk_size: int = 256, batch_size: int | None = None,
                  workers: int | None = None, ranks: Ranks | None = None, progress: bool = True) -> Codes:
    """Codes of every image of ``dataset``, resuming a stopped run in ``folder``.

    Args:
        model: a Model or network.
        dataset: a dataset or its name (a folder, a list file, ``digits``, ``photos:N``).
        folder: where chunks and merged arrays go; a run there of other settings is refused.
        layer: any layer (4-D outputs are averaged over positions); the penultimate by default.
        chunk_size: images per resumable unit of work.
        batch_size: images per forward pass (4 on CPU, 128 on GPU by default).
        workers: reader processes (default: none on CPU, one per spare core on GPU).
        ranks: the torchrun group; alone by default.
        progress: show a progress bar.

    Returns:
        :class:`Codes` (on every rank, once all ranks are done).
    """
    model, dataset, ranks = as_model(model), open_dataset(dataset), ranks or Ranks()
    layer = layer or penultimate_layer(model)
    resolve(model.net, layer)  # an unknown layer is refused before anything is written
    manifest = {"task": "codes", "model": model.name, "layer": layer, "dataset": dataset.spec}
    store = ChunkStore(folder, manifest, count=len(dataset), chunk_size=chunk_size, ranks=ranks)
    run_pass(model, dataset, [layer], store, _Rows(layer), ranks=ranks, batch_size=batch_size, workers=workers,
             progress=progress, label=f"codes {layer}")
    if ranks.main:
        _merge(store)
    ranks.barrier()
    folder = Path(folder)
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in FILES}
    return Codes(layer, arrays["codes"], arrays["indices"], arrays["labels"], dataset.classes, store.failures())


def _merge(store: ChunkStore) -> None:
    """Writes the chunks one after another into ``codes.npy`` and friends (flat memory)."""
    sizes, width = [], 0
    for chunk in range(store.chunks):
        with np.load(store.path(chunk), allow_pickle=False) as data:
            sizes.append(len(data["codes"]))
            width = max(width, data["codes"].shape[1])
    if not sum(sizes):
        failures = store.failures()
        raise ConvscopeError(f"none of the {len(failures)} images could be read; the first: {failures[0].reason}")
    dtypes = {"codes": np.float32, "indices": np.int64, "labels": np.int64}
    shapes = {"codes": (sum(sizes), width), "indices": (sum(sizes),), "labels": (sum(sizes),)}
    temporary = {name: store.folder / f".{name}.npy.part" for name in FILES}
    try:
        outputs = {name: np.lib.format.open_memmap(temporary[name], mode="w+", dtype=dtypes[name],
                                                   shape=shapes[name]) for name in FILES}
        start = 0
        for chunk, size in enumerate(sizes):
            arrays = store.load(chunk)
            for name in FILES:
                outputs[name][start:start + size] = arrays[name]
            start += size
        for name in FILES:
            outputs[name].flush()
            del outputs[name]
            os.replace(temporary[name], store.folder / f"{name}.npy")
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
