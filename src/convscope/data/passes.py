"""One pass of a model over a dataset: chunked, split across torchrun ranks, resumable.

Each rank takes every ``world``-th unfinished chunk, runs the model up to the deepest of the
requested layers on its batches and hands the layers' outputs to a *reducer* (codes keep the
pooled vector, top activations keep each channel's best units); the reducer's arrays are saved
per chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from convscope.core.fastpath import fast_model, in_fast_layout
from convscope.core.hooks import capture, frozen
from convscope.data.datasets import ImageDataset
from convscope.data.distributed import Ranks
from convscope.data.loader import Batch, chunk_range, default_workers, stream
from convscope.data.results import ChunkStore
from convscope.models.model import Model

#: Images per batch. On CPU small batches of channels-last images are fastest for mobile
#: networks (EfficientNet-Lite0 on 2 cores: 83 img/s at 4, 33 img/s at 32; benchmarks/dataset.py).
CPU_BATCH, GPU_BATCH = 4, 128


class Reducer(Protocol):
    """Keeps what a run needs of the layers' outputs, one chunk at a time."""

    def add(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        """Takes one batch's ``{layer: (B, C, h, w) or (B, D) output}``."""

    def finish(self) -> dict[str, np.ndarray]:
        """The chunk's arrays to save; the reducer is then empty for the next chunk."""


def run_pass(model: Model, dataset: ImageDataset, layers: list[str], store: ChunkStore, reducer: Reducer, *,
             ranks: Ranks, batch_size: int | None = None, workers: int | None = None,
             progress: bool = True, label: str = "images") -> None:
    """Computes every unfinished chunk of ``store`` that falls to this rank; returns when all
    ranks are done. Interrupting it loses at most the chunks in progress."""
    pending, died = store.pending(), store.died_on()
    ranks.barrier()  # every rank has read the same lists before anyone adds to them
    if died and ranks.main:
        images = chunk_range(died[0], store.chunk_size, len(dataset))
        warnings.warn(f"an earlier run's process died while computing chunk{'s' if len(died) > 1 else ''} "
                      f"{', '.join(map(str, died))} (the first: images {images[0]}-{images[-1]}), perhaps a crash in the "
                      f"network's native code; computing {'them' if len(died) > 1 else 'it'} again", stacklevel=2)
    mine = ranks.share(pending)
    on_gpu = model.device.type == "cuda"
    batch_size = batch_size or (GPU_BATCH if on_gpu else CPU_BATCH)
    workers = default_workers(model.device) if workers is None else workers
    total = sum(len(chunk_range(chunk, store.chunk_size, len(dataset))) for chunk in mine)
    suffix = f" (rank {ranks.rank} of {ranks.world})" if ranks.world > 1 else ""
    bar = tqdm(total=total, desc=label + suffix, unit="img", disable=not progress or not ranks.main)
    failures, begun = [], None
    with bar, frozen(model.net), torch.inference_mode():
        for batch in stream(dataset, mine, chunk_size=store.chunk_size, size=model.input_size,
                            channels=model.channels, batch_size=batch_size, workers=workers):
            if batch.chunk != begun:
                store.begin(batch.chunk)
                begun = batch.chunk
            if len(batch.indices):
                x = batch.images.to(model.device, non_blocking=True)
                fast = fast_model(model, layers, x)
                reducer.add(batch, in_fast_layout(fast, lambda z: capture(fast, fast.net, z, layers), x))
            failures.extend(batch.failures)
            bar.update(len(batch.indices) + len(batch.failures))
            if batch.last:
                store.save(batch.chunk, reducer.finish(), failures)
                failures = []
    ranks.barrier()


def merge_chunks(store: ChunkStore, combine: Callable[[dict, dict], dict]) -> dict[str, np.ndarray]:
    """Folds every chunk's arrays, in chunk order, with ``combine(so_far, next)``."""
    merged = store.load(0)
    for chunk in range(1, store.chunks):
        merged = combine(merged, store.load(chunk))
    return merged
