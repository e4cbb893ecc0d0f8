"""Top activating images and patches of a dataset, for every channel of a layer at once.

For each image and channel the strongest unit (position) of the layer is found; each channel
keeps its ``k`` best images in a running top-k ``(C, k)`` (a per-channel heap, merged batch by
batch), so memory does not grow with the dataset. The patch of an entry is the part of the
image inside the receptive field of its strongest unit (Zeiler & Fergus 2014, Girshick et al.
2014). Ties are broken by the smaller dataset index, so the result equals brute force exactly
whatever the batching or the number of processes.

A run's folder holds ``top.npz`` and ``index.json`` (what the web explorer reads) and a
picture per channel in ``channels/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from convscope.core.images import resize
from convscope.core.maps import MapReading
from convscope.core.receptive import Axis, ReceptiveField
from convscope.core.render import Picture, grid, picture, save_array, save_json
from convscope.core.summary import list_layers
from convscope.data.datasets import ImageDataset, open_dataset
from convscope.data.distributed import Ranks
from convscope.data.loader import Batch, Failure, fitted_image
from convscope.data.passes import merge_chunks, run_pass
from convscope.data.results import ChunkStore
from convscope.errors import ConvscopeError, unknown_choice
from convscope.inspect.fields import clipped_box
from convscope.models.model import Model, as_model

TOP_FIELDS = ("values", "images", "units")


def merge_top(first: dict[str, np.ndarray], second: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """The ``k`` best entries per channel of two top lists: largest value first, then smallest
    image index. Each list has ``values`` ``(C, m)``, ``images`` ``(C, m)`` (-1 = empty) and
    ``units`` ``(C, m)`` flat positions."""
    values = np.concatenate([first["values"], second["values"]], 1)
    images = np.concatenate([first["images"], second["images"]], 1)
    units = np.concatenate([first["units"], second["units"]], 1)
    empty = images < 0
    order = np.lexsort((np.where(empty, np.iinfo(np.int64).max, images), np.where(empty, np.inf, -values)),
                       axis=1)[:, :k]
    return {name: np.take_along_axis(array, order, 1) for name, array in
            (("values", values), ("images", images), ("units", units))}


def empty_top(channels: int, k: int) -> dict[str, np.ndarray]:
    """A top list with no entries yet."""
    return {"values": np.full((channels, k), -np.inf, np.float32), "images": np.full((channels, k), -1, np.int64),
            "units": np.zeros((channels, k), np.int64)}


def _candidates(output: torch.Tensor, reading: MapReading | None, channels: torch.Tensor | None,
                indices: torch.Tensor) -> dict[str, np.ndarray]:
    """Each image's strongest unit per channel: ``(C, B)`` values, units and image indices."""
    output = reading.maps(output).flatten(2) if reading is not None else output.flatten(1)[:, :, None]
    if channels is not None:
        output = output[:, channels.to(output.device)]
    values, units = output.float().max(dim=2)  # (B, C)
    return {"values": values.T.cpu().numpy(), "units": units.T.cpu().numpy().astype(np.int64),
            "images": indices[None].expand(values.shape[1], -1).numpy().copy()}


def _part(arrays: dict[str, np.ndarray], number: int) -> dict[str, np.ndarray]:
    """Layer ``number``'s top list out of a chunk's arrays (saved as ``layer{number}_{field}``)."""
    return {name: arrays[f"layer{number}_{name}"] for name in TOP_FIELDS}


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {f"layer{number}_{name}": array for number, part in enumerate(parts) for name, array in part.items()}


class _Best:
    """Reducer keeping, for each layer, each channel's top ``k`` (image, strongest unit) of a chunk."""

    def __init__(self, layers: list[str], readings: list[MapReading | None], channels: torch.Tensor | None, k: int,
                 counts: list[int], sign: float = 1.0) -> None:
        self.layers, self.readings, self.channels, self.k, self.counts = layers, readings, channels, k, counts
        self.sign = sign  # -1 keeps the lowest activations (the strongest of the negated ones)
        self.tops: list[dict[str, np.ndarray]] = self._empty()

    def _empty(self) -> list[dict[str, np.ndarray]]:
        return [empty_top(count, self.k) for count in self.counts]

    def add(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        self.tops = [merge_top(top, _candidates(self.sign * outputs[layer], reading, self.channels, batch.indices),
                               self.k)
                     for layer, reading, top in zip(self.layers, self.readings, self.tops)]

    def finish(self) -> dict[str, np.ndarray]:
        tops, self.tops = self.tops, self._empty()
        return _joined(tops)


@dataclass
class TopActivations:
    """Each channel's top-k images over a dataset.

    Attributes:
        layer: the layer.
        channels: ``(C,)`` channel numbers, one row each below.
        values: ``(C, k)`` activation of the strongest unit, best first (-inf: no entry).
        images: ``(C, k)`` dataset indices (-1: no entry).
        units: ``(C, k, 2)`` ``(y, x)`` of the strongest unit in the layer's output.
        field: the layer's receptive field (``whole`` for non-spatial layers).
        input_size: ``(height, width)`` the images were fitted to.
        failures: unreadable images (skipped).
        lowest: the images are the *bottom* k: the lowest activations, ``values`` the weakest
            unit's (lowest first).
    """

    layer: str
    channels: np.ndarray
    values: np.ndarray
    images: np.ndarray
    units: np.ndarray
    field: ReceptiveField
    input_size: tuple[int, int]
    failures: list[Failure]
    lowest: bool = False

    def row(self, channel: int) -> int:
        where = np.flatnonzero(self.channels == channel)
        if not len(where):
            raise unknown_choice("channel", str(channel), [str(c) for c in self.channels])
        return int(where[0])

    def box(self, channel: int, rank: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` inclusive, clipped to the image: the receptive field of
        the ``rank``-th best unit of ``channel``."""
        if self.field.whole:
            return 0, 0, self.input_size[0] - 1, self.input_size[1] - 1
        y, x = self.units[self.row(channel), rank]
        return clipped_box(self.field, (int(y), int(x)), self.input_size)

    def patch(self, dataset: ImageDataset, channel: int, rank: int) -> torch.Tensor:
        """``(3, h, w)`` the image pixels inside :meth:`box`, at the model's input size."""
        top, left, bottom, right = self.box(channel, rank)
        image = _fitted(dataset, int(self.images[self.row(channel), rank]), self.input_size)
        return image[:, top:bottom + 1, left:right + 1]

    def picture(self, dataset: ImageDataset, channel: int, *, tile: int = 64) -> Picture:
        """The channel's top patches, best first, each placed where it lies in its receptive field."""
        row = self.row(channel)
        ranks = [r for r in range(self.images.shape[1]) if self.images[row, r] >= 0]
        tiles = torch.stack([self._tile(dataset, channel, r, tile) for r in ranks]) if ranks else \
            torch.full((1, 3, tile, tile), 0.5)
        values = [float(self.values[row, r]) for r in ranks]
        caption = (f"{self.layer} channel {channel}: {'bottom' if self.lowest else 'top'} {len(ranks)} patches"
                   + (f", activations {values[0]:.3g} to {values[-1]:.3g}" if values else ""))
        return picture(grid(tiles, columns=int(np.ceil(np.sqrt(len(tiles)))), background=0.5), caption,
                       layer=self.layer, channel=channel, values=values,
                       images=[int(i) for i in self.images[row, ranks]])

    def _tile(self, dataset: ImageDataset, channel: int, rank: int, tile: int) -> torch.Tensor:
        crop = self.patch(dataset, channel, rank)
        top, left, _, _ = self.box(channel, rank)
        height, width = (min(size, side) for size, side in zip(self.field.size, self.input_size))
        canvas = torch.full((3, height, width), 0.5)
        if self.field.whole:
            canvas = crop
        else:
            y, x = (int(v) for v in self.units[self.row(channel), rank])
            full_top, full_left, _, _ = self.field.box(y, x)
            dy = min(top - full_top, height - crop.shape[1])
            dx = min(left - full_left, width - crop.shape[2])
            canvas[:, dy:dy + crop.shape[1], dx:dx + crop.shape[2]] = crop
        return resize(canvas[None], (tile, tile))[0].clamp(0, 1)

    def save(self, folder: str | Path, dataset: ImageDataset, *, model: str = "", progress: bool = False) -> None:
        """Writes ``top.npz``, ``index.json`` and ``channels/NNNN.png`` (a picture per channel)."""
        folder = Path(folder)
        (folder / "channels").mkdir(parents=True, exist_ok=True)
        for channel in tqdm(self.channels.tolist(), desc="pictures", unit="channel", disable=not progress):
            self.picture(dataset, channel).save(folder / "channels" / f"{channel:04d}.png")
        save_array(folder / "top.npz", channels=self.channels, values=self.values, images=self.images,
                   units=self.units)
        used = sorted({int(i) for i in self.images.ravel() if i >= 0})
        index = {"model": model, "layer": self.layer, "dataset": dataset.spec, "k": int(self.images.shape[1]),
                 "input_size": list(self.input_size), "receptive_field": _field_dict(self.field),
                 "channels": self.channels.tolist(), "pictures": "channels/{channel:04d}.png",
                 "images": {str(i): dataset.describe(i) for i in used},
                 "failures": [f.as_dict() for f in self.failures]}
        _fitted.cache_clear()
        save_json(folder / "index.json", index)


@lru_cache(maxsize=32)
def _fitted(dataset: ImageDataset, index: int, size: tuple[int, int]) -> torch.Tensor:
    """Image ``index`` as the loader gave it to the model, in RGB (the last few are cached)."""
    return fitted_image(dataset, index, tuple(size))


def _field_dict(field: ReceptiveField) -> dict:
    axes = {"height": field.height, "width": field.width}
    return {"whole": field.whole,
            **{name: a.as_dict() for name, a in axes.items()}}


def load_top_activations(folder: str | Path) -> TopActivations:
    """Reads what :meth:`TopActivations.save` wrote (used by the web explorer).

    Raises:
        ConvscopeError: the folder holds no top-activations index.
    """
    folder = Path(folder)
    if not (folder / "index.json").is_file() or not (folder / "top.npz").is_file():
        raise ConvscopeError(f"{folder}: no top-activations index here (made by `convscope top-activations`)")
    index = json.loads((folder / "index.json").read_text())
    with np.load(folder / "top.npz", allow_pickle=False) as arrays:
        top = {name: arrays[name] for name in arrays.files}
    rf = index["receptive_field"]
    field = ReceptiveField(Axis.from_dict(rf["height"]), Axis.from_dict(rf["width"]), rf["whole"])
    return TopActivations(index["layer"], top["channels"], top["values"], top["images"], top["units"], field,
                          tuple(index["input_size"]), [Failure(**f) for f in index["failures"]])


def top_activations(model: Model | nn.Module, dataset: str | Path | ImageDataset, folder: str | Path, *,
                    layer: str, **options) -> TopActivations:
    """The top-``k`` images of each channel of ``layer`` over ``dataset`` (see :func:`top_activations_of`)."""
    return top_activations_of(model, dataset, folder, layers=[layer], **options)[layer]


def top_activations_of(model: Model | nn.Module, dataset: str | Path | ImageDataset, folder: str | Path, *,
                       layers: Sequence[str], channels: list[int] | None = None, k: int = 9, chunk_size: int = 256,
                       batch_size: int | None = None, workers: int | None = None, ranks: Ranks | None = None,
                       progress: bool = True, lowest: bool = False) -> dict[str, TopActivations]:
    """The top-``k`` images of each channel of several layers, in one pass over ``dataset``,
    resuming a run in ``folder``.

    Args:
        model: a Model or network.
        dataset: a dataset or its name (a folder, a list file, ``digits``, ``photos:N``).
        folder: where chunks go (a run there of other settings is refused).
        layers: the layers; each outputs ``(B, C, h, w)`` or ``(B, C)``.
        channels: channel numbers (valid in every layer); all by default.
        k: images per channel.
        chunk_size, batch_size, workers, ranks, progress: as for :func:`extract_codes`.
        lowest: rank by the weakest unit instead, lowest first (the bottom k).

    Returns:
        ``{layer: TopActivations}`` on every rank (pictures are not drawn here: see ``save``).
    """
    model, dataset, ranks = as_model(model), open_dataset(dataset), ranks or Ranks()
    layers = list(dict.fromkeys(layers))
    infos = [_layer_info(model, layer) for layer in layers]
    for layer, info in zip(layers, infos):
        channels = _check_channels(channels, info.map_shape[0], layer)
    if k < 1:
        raise ConvscopeError(f"k = {k}; the number of images per channel must be at least 1")
    manifest = {"task": "bottom-activations" if lowest else "top-activations", "model": model.name,
                "layers": layers, "dataset": dataset.spec, "channels": channels, "k": k}
    store = ChunkStore(folder, manifest, count=len(dataset), chunk_size=chunk_size, ranks=ranks)
    kept = torch.tensor(channels) if channels is not None else None
    counts = [len(channels) if channels is not None else info.map_shape[0] for info in infos]
    readings = [info.reading for info in infos]
    run_pass(model, dataset, layers, store, _Best(layers, readings, kept, k, counts, -1.0 if lowest else 1.0),
             ranks=ranks, batch_size=batch_size, workers=workers, progress=progress,
             label=f"{'bottom' if lowest else 'top'} {', '.join(layers)}")
    merged = merge_chunks(store, lambda a, b: _joined([merge_top(_part(a, n), _part(b, n), k)
                                                       for n in range(len(layers))]))
    failures = store.failures()
    return {layer: _result(model, layer, info, channels, _part(merged, number), failures, lowest)
            for number, (layer, info) in enumerate(zip(layers, infos))}


def _result(model: Model, layer: str, info, channels: list[int] | None, top: dict[str, np.ndarray],
            failures: list[Failure], lowest: bool) -> TopActivations:
    width = info.reading.grid[1] if info.reading is not None else 1
    units = np.stack([top["units"] // width, top["units"] % width], -1)
    field = info.receptive_field if info.reading is not None and info.receptive_field is not None else \
        ReceptiveField.of_whole_image(model.input_size)
    numbers = np.asarray(channels if channels is not None else range(info.map_shape[0]))
    values = -top["values"] if lowest else top["values"]
    return TopActivations(layer, numbers, values, top["images"], units, field, tuple(model.input_size), failures,
                          lowest)


def _layer_info(model: Model, layer: str):
    layers = {info.name: info for info in list_layers(model)}
    if layer not in layers:
        raise unknown_choice("layer", layer, layers)
    info = layers[layer]
    if info.reading is None and len(info.shape) != 1:
        raise ConvscopeError(f"layer {layer!r} outputs {info.shape or 'no tensor'}; top activations need "
                             f"(C, h, w) maps (or channels-last maps, or tokens on a grid) or (C,) vectors")
    return info


def _check_channels(channels: list[int] | None, count: int, layer: str) -> list[int] | None:
    if channels is None:
        return None
    bad = [c for c in channels if not 0 <= c < count]
    if bad or not channels:
        raise ConvscopeError(f"channel(s) {bad or '(none)'} out of range for layer {layer!r}; accepted: 0..{count - 1}")
    return sorted(set(channels))


