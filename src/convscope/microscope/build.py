"""Building a microscope site: units rendered, dataset patches found, pages written."""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn
from tqdm import tqdm

from convscope.core.render import save_json
from convscope.core.summary import list_layers, map_layer
from convscope.data.datasets import ImageDataset, open_dataset
from convscope.data.distributed import Ranks
from convscope.errors import ConvscopeError
from convscope.inspect.atlas import activation_atlas, activation_samples
from convscope.inspect.top_patches import top_activations_of
from convscope.microscope.site import LayerPages, write_site
from convscope.microscope.units import UnitSettings, render_units, unit_folder
from convscope.models.model import Model, as_model


def build_microscope(model: Model | nn.Module, layers: list[str], folder: str | Path, *,
                     dataset: str | ImageDataset | None = None, k: int = 9, atlas: int = 10,
                     settings: UnitSettings = UnitSettings(), ranks: Ranks | None = None,
                     progress: bool = True) -> Path:
    """Writes a static site into ``folder`` with a page per unit of ``layers`` (``(C, h, w)`` maps):
    its positive, negative and ``settings.diverse`` diverse visualizations, its DeepDream of the
    sample photo and, given a ``dataset``, its top and bottom ``k`` images (receptive-field patches)
    and each layer's activation atlas on an ``atlas x atlas`` grid (0: none).

    Runs again over the same folder resume it (settings that differ are refused); under torchrun
    the ranks share the work and rank 0 writes the pages. Returns ``folder / "index.html"``.
    """
    model, ranks, folder = as_model(model), ranks or Ranks(), Path(folder)
    counts = _channel_counts(model, layers)
    images = open_dataset(dataset) if dataset is not None else None
    for layer, count in counts.items():
        render_units(model, layer, count, folder, settings, ranks=ranks, progress=progress)
    if images is not None:
        _dataset_patches(model, list(counts), images, folder, k, ranks, progress)
        if atlas:
            _atlases(model, list(counts), images, folder, atlas, settings, ranks, progress)
    if ranks.main:
        infos = {info.name: info for info in list_layers(model)}
        shown = images is not None
        pages = [LayerPages(layer, count, _field(infos[layer]), shown, shown, shown and atlas > 0, settings.size)
                 for layer, count in counts.items()]
        write_site(folder, model.name, pages, diverse=settings.diverse, dataset=images.spec if images else None,
                   meaning=images.meaning if images else "", photo=settings.photo)
    ranks.barrier()
    return folder / "index.html"


def _channel_counts(model: Model, layers: list[str]) -> dict[str, int]:
    if not layers:
        raise ConvscopeError("no layers given; name one or more, e.g. --layers _blocks.6,_blocks.10")
    return {layer: map_layer(model, layer, "the microscope").shape[0] for layer in dict.fromkeys(layers)}


def _field(info) -> int | None:
    field = info.receptive_field
    return None if field is None or field.whole else int(field.size[0])


def _dataset_patches(model: Model, layers: list[str], images: ImageDataset, folder: Path, k: int, ranks: Ranks,
                     progress: bool) -> None:
    """Each unit's top and bottom patches, from two resumable passes over ``images``."""
    for name, lowest in (("top", False), ("bottom", True)):
        found = top_activations_of(model, images, folder / ".work" / name, layers=layers, k=k, ranks=ranks,
                                   progress=progress, lowest=lowest)
        if not ranks.main:
            continue
        for layer, top in found.items():
            for channel in tqdm(top.channels.tolist(), desc=f"{name} patches of {layer}", unit="unit",
                                disable=not progress):
                shown = top.picture(images, channel)
                shown.save(unit_folder(folder, layer, channel) / f"{name}.png")
                save_json(unit_folder(folder, layer, channel) / f"{name}.json",
                          {"values": shown.numbers["values"], "images": [images.describe(i) for i in
                                                                         shown.numbers["images"]]})


def _atlases(model: Model, layers: list[str], images: ImageDataset, folder: Path, side: int, settings: UnitSettings,
             ranks: Ranks, progress: bool) -> None:
    """Each layer's activation atlas (t-SNE layout; 4 vectors per image; the grid made smaller
    than ``side`` where there are fewer than 4 vectors per cell), ``layers/LAYER/atlas.png``."""
    for layer in layers:
        samples = activation_samples(model, images, folder / ".work" / "atlas" / layer, layer=layer, per_image=4,
                                     ranks=ranks, progress=progress)
        if ranks.main:
            fitted = max(2, min(side, int(math.sqrt(len(samples.vectors) / 4))))
            found = activation_atlas(model, samples, side=fitted, method="tsne", min_count=2, size=settings.size,
                                     steps=settings.steps, chunk=settings.batch, seed=settings.seed,
                                     progress=progress)
            found.picture().save(folder / "layers" / layer / "atlas.png")
