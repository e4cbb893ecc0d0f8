"""Every channel's pictures for the microscope, computed a batch of channels at a time.

A layer's channels are split into chunks; each chunk is one batched rendering of the channels'
positive, negative and diverse visualizations (:func:`~convscope.optimize.visualize.channel_views`)
and one batched DeepDream of the sample photo, one channel per copy. A chunk's pictures are
written, then the chunk is marked done in a :class:`~convscope.data.results.ChunkStore`; a
rerun skips finished chunks and torchrun ranks share the rest. Each chunk is seeded by its
number, so where and when it runs does not change its pictures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from convscope.core.render import picture
from convscope.data.distributed import Ranks
from convscope.data.results import ChunkStore
from convscope.models.model import Model
from convscope.optimize.dream import dream
from convscope.optimize.visualize import ChannelViews, channel_views
from convscope.samples import sample_image

#: The pictures of one unit, by file name (without ``.png``); ``diverse-K`` for K = 1..diverse.
VIEWS = ("positive", "negative", "dream")


@dataclass(frozen=True)
class UnitSettings:
    """How each unit is rendered: ``size`` pixels, ``steps`` optimizer steps, ``diverse`` extra
    images, ``chunk`` channels per saved (resumable) piece of work, at most ``batch`` images per
    optimization (on a CPU, batches of about 16 run fastest per image: larger ones leave the
    cache), ``photo`` the sample photo dreamed, ``seed``."""

    size: int = 96
    steps: int = 128
    diverse: int = 2
    chunk: int = 16
    batch: int = 16
    photo: str = "cat"
    seed: int = 0


def unit_folder(site: Path, layer: str, channel: int) -> Path:
    return site / "layers" / layer / f"{channel:04d}"


def render_units(model: Model, layer: str, channels: int, site: Path, settings: UnitSettings, *, ranks: Ranks,
                 progress: bool = True) -> None:
    """Writes ``layers/LAYER/NNNN/{positive,negative,diverse-K,dream}.png`` for every channel
    ``0..channels-1``; returns when every rank is done."""
    store = ChunkStore(site / ".work" / "units" / layer, {"task": "microscope-units", "model": model.name,
                                                         "layer": layer, **asdict(settings)},
                       count=channels, chunk_size=settings.chunk, ranks=ranks)
    mine = ranks.share(store.pending())
    ranks.barrier()
    bar = tqdm(total=sum(len(_channels(chunk, settings.chunk, channels)) for chunk in mine), unit="channel",
               desc=f"units of {layer}" + (f" (rank {ranks.rank})" if ranks.world > 1 else ""),
               disable=not progress or not ranks.main)
    with bar:
        for chunk in mine:
            numbers = _channels(chunk, settings.chunk, channels)
            _render_chunk(model, layer, numbers, site, settings, seed=settings.seed + chunk)
            store.save(chunk, {"channels": np.asarray(numbers)}, [])
            bar.update(len(numbers))
    ranks.barrier()


def _channels(chunk: int, size: int, count: int) -> list[int]:
    return list(range(chunk * size, min(count, (chunk + 1) * size)))


def _render_chunk(model: Model, layer: str, numbers: list[int], site: Path, settings: UnitSettings,
                  seed: int) -> None:
    per_batch = max(1, settings.batch // (2 + settings.diverse))  # channels whose views fill one batch
    parts = [channel_views(model, layer, part, diverse=settings.diverse, size=settings.size, steps=settings.steps,
                           transforms="affine", seed=seed * 1009 + k)  # a seed of its own for each batch of the chunk
             for k, part in enumerate(_batches(numbers, per_batch))]
    views = ChannelViews.concatenate(parts)
    photo = sample_image(settings.photo, size=settings.size * 2)
    dreams = torch.cat([dream(model, photo.expand(len(part), -1, -1, -1), layer, channel=torch.tensor(part),
                              octaves=3, steps=10, seed=seed).images       # one copy of the photo per channel
                        for part in _batches(numbers, settings.batch)])
    for i, channel in enumerate(numbers):
        folder = unit_folder(site, layer, channel)
        folder.mkdir(parents=True, exist_ok=True)
        shown = {"positive": views.positive[i], "negative": views.negative[i], "dream": dreams[i],
                 **{f"diverse-{k + 1}": image for k, image in enumerate(views.diverse[i])}}
        for name, image in shown.items():
            picture(image).save(folder / f"{name}.png")


def _batches(numbers: list[int], size: int) -> list[list[int]]:
    return [numbers[start:start + size] for start in range(0, len(numbers), size)]
