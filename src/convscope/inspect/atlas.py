"""Activation atlas (Carter et al. 2019): what a layer can represent, laid out as a map.

A pass over a dataset keeps a few activation vectors per image (random positions, seeded by the
image's index: the same vectors whatever the chunking or the number of processes), with the
model's top class. The vectors are laid out in 2-D (UMAP or t-SNE), binned into a grid, and each
cell holding enough of them is drawn as the feature visualization of their mean (a direction
objective), all cells in batched renders. A class atlas keeps only the vectors of images the
model puts in that class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from convscope.attribute.targets import class_indices
from convscope.core.objectives import direction
from convscope.core.render import Picture, grid, picture
from convscope.core.summary import list_layers, map_layer
from convscope.data.datasets import ImageDataset, open_dataset
from convscope.data.distributed import Ranks
from convscope.data.loader import Batch
from convscope.data.passes import merge_chunks, run_pass
from convscope.data.results import ChunkStore
from convscope.errors import ConvscopeError
from convscope.inspect.embedding import embed_2d
from convscope.models.model import Model, as_model
from convscope.optimize.visualize import visualize


@dataclass
class ActivationSamples:
    """Activation vectors of a layer over a dataset: ``vectors`` ``(N, C)``, ``images`` ``(N,)``
    dataset indices, ``classes`` ``(N,)`` the model's top class of each one's image."""

    layer: str
    vectors: np.ndarray
    images: np.ndarray
    classes: np.ndarray


@dataclass
class Atlas:
    """Grid cells and their renderings.

    Attributes:
        cells: ``(K, 2)`` ``(row, column)`` of each drawn cell; counts: ``(K,)`` vectors in it.
        directions: ``(K, C)`` the mean activation vector of each cell.
        images: ``(K, 3, s, s)`` each cell's feature visualization.
        side: the grid is ``side x side``; points: ``(N, 2)`` every vector's place in 2-D.
    """

    layer: str
    side: int
    cells: np.ndarray
    counts: np.ndarray
    directions: torch.Tensor
    images: torch.Tensor
    points: np.ndarray
    title: str

    def picture(self) -> Picture:
        """The cells at their grid places (empty cells gray)."""
        size = self.images.shape[-1]
        tiles = torch.full((self.side * self.side, 3, size, size), 0.5)
        for (row, column), image in zip(self.cells, self.images):
            tiles[row * self.side + column] = image
        return picture(grid(tiles, columns=self.side, padding=1, background=1.0),
                       f"{self.title}: {len(self.cells)} cells of a {self.side}x{self.side} grid over "
                       f"{len(self.points)} activation vectors", cells=len(self.cells), vectors=len(self.points))


class _Samples:
    """Reducer keeping ``per_image`` random activation vectors of each image and its top class."""

    def __init__(self, layer: str, head: str, per_image: int, seed: int) -> None:
        self.layer, self.head, self.per_image, self.seed = layer, head, per_image, seed
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        maps = outputs[self.layer].float()
        top = outputs[self.head].flatten(1).argmax(1).cpu()
        for row, index in enumerate(batch.indices.tolist()):
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            places = torch.randint(maps.shape[-2] * maps.shape[-1], (self.per_image,), generator=generator)
            vectors = maps[row].flatten(1)[:, places.to(maps.device)].T.cpu().numpy()
            self.parts.append((vectors, np.full(self.per_image, index), np.full(self.per_image, int(top[row]))))

    def finish(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return {"vectors": np.zeros((0, 0), np.float32), "images": np.zeros(0, np.int64),
                    "classes": np.zeros(0, np.int64)}
        vectors, images, classes = (np.concatenate(column) for column in zip(*self.parts))
        self.parts = []
        return {"vectors": vectors.astype(np.float32), "images": images.astype(np.int64),
                "classes": classes.astype(np.int64)}


def activation_samples(model: Model | nn.Module, dataset: str | Path | ImageDataset, folder: str | Path, *,
                       layer: str, per_image: int = 1, seed: int = 0, chunk_size: int = 256,
                       batch_size: int | None = None, workers: int | None = None, ranks: Ranks | None = None,
                       progress: bool = True) -> ActivationSamples:
    """``per_image`` activation vectors of ``layer`` per image of ``dataset`` (a resumable,
    chunked pass under ``folder``; torchrun ranks share it)."""
    model, dataset, ranks = as_model(model), open_dataset(dataset), ranks or Ranks()
    map_layer(model, layer, "an atlas")
    head = list_layers(model)[-1].name
    manifest = {"task": "atlas-samples", "model": model.name, "layer": layer, "dataset": dataset.spec,
                "per_image": per_image, "seed": seed}
    store = ChunkStore(folder, manifest, count=len(dataset), chunk_size=chunk_size, ranks=ranks)
    run_pass(model, dataset, [layer, head], store, _Samples(layer, head, per_image, seed), ranks=ranks,
             batch_size=batch_size, workers=workers, progress=progress, label=f"atlas {layer}")
    merged = merge_chunks(store, lambda a, b: {name: np.concatenate([a[name], b[name]]) if len(a[name]) else b[name]
                                               for name in a})
    return ActivationSamples(layer, merged["vectors"], merged["images"], merged["classes"])


def activation_atlas(model: Model | nn.Module, samples: ActivationSamples, *, side: int = 12, method: str = "umap",
                     min_count: int = 3, target: int | str | None = None, size: int = 64, steps: int = 128,
                     chunk: int | None = None, seed: int = 0, progress: bool = False) -> Atlas:
    """Lays ``samples`` out in 2-D (``method``), bins them into a ``side x side`` grid and renders
    every cell holding at least ``min_count`` vectors (``size`` pixels, ``steps`` steps, ``chunk``
    cells per batch: by default 16 on a CPU, where larger batches run slower per image, 64 on a
    GPU); ``target``: only the vectors of images the model puts in that class;
    ``progress``: bars for the layout and the cells."""
    model = as_model(model)
    keep = np.ones(len(samples.vectors), bool)
    title = f"activation atlas of {samples.layer}"
    if target is not None:
        index = int(class_indices(model, torch.zeros(1), target)[0])
        keep = samples.classes == index
        title += f", class {model.label(index)}"
        if keep.sum() < 5:
            raise ConvscopeError(f"only {keep.sum()} vectors come from images of class {model.label(index)}; "
                                 f"an atlas needs at least 5 (use a larger dataset)")
    vectors = samples.vectors[keep]
    points = embed_2d(vectors, method, seed=seed, progress=progress)
    low, high = points.min(0), points.max(0)
    places = np.clip(((points - low) / np.maximum(high - low, 1e-12) * side).astype(int), 0, side - 1)
    flat = (side - 1 - places[:, 1]) * side + places[:, 0]         # rows go down, y goes up
    counts = np.bincount(flat, minlength=side * side)
    drawn = np.flatnonzero(counts >= min_count)
    if not len(drawn):
        raise ConvscopeError(f"no cell of the {side}x{side} grid holds {min_count} vectors; lower min_count or side, "
                             f"or use more images")
    directions = torch.from_numpy(np.stack([vectors[flat == cell].mean(0) for cell in drawn]))
    chunk = chunk or (64 if model.device.type == "cuda" else 16)
    images = torch.cat([visualize(model, direction(samples.layer, part, cossim_power=1.0), batch=len(part),
                                  size=size, steps=steps, seed=seed, transforms="affine").images
                        for part in tqdm(directions.split(chunk), desc=f"atlas cells of {samples.layer}",
                                         unit="batch", disable=not progress)])
    return Atlas(samples.layer, side, np.stack([drawn // side, drawn % side], 1), counts[drawn], directions, images,
                 points, title)
