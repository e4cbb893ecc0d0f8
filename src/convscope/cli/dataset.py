"""Commands over a whole dataset: ``embed`` (codes, t-SNE/UMAP, the grid), ``top-activations`` and
``atlas``.

Both run unchanged under ``torchrun --nproc_per_node N``, and resume when run again with the
same output folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from convscope.attribute.targets import class_indices
from convscope.cli.app import DeviceOption, ModelOption, app, open_model
from convscope.core.render import save_array, save_json
from convscope.data.datasets import SPECS, open_dataset
from convscope.data.distributed import process_group
from convscope.errors import ConvscopeError
from convscope.inspect.atlas import activation_atlas, activation_samples
from convscope.inspect.codes import extract_codes
from convscope.inspect.embedding import METHODS, check_method, embed_2d, grid_picture, knn_accuracy, scatter_picture
from convscope.inspect.top_patches import top_activations_of as top_images
from convscope.models import DEFAULT_MODEL

DatasetArgument = Annotated[str, typer.Argument(help=f"The images: {SPECS}.")]
FolderOption = Annotated[Path, typer.Option("--output", "-o", help="Folder for the results (run again to resume).")]
BatchOption = Annotated[int | None,
                        typer.Option(min=1, help="Images per forward pass (default: 4 on CPU, 128 on GPU).")]
WorkersOption = Annotated[int | None, typer.Option(
    min=0, help="Reader processes (default: none on CPU, a spare core each on GPU).")]
ChunkOption = Annotated[int, typer.Option(min=1, help="Images per resumable unit of work.")]


@app.command()
def embed(dataset: DatasetArgument, output: FolderOption,
          layer: Annotated[str | None, typer.Option(help="Layer of the codes (default: penultimate).")] = None,
          method: Annotated[str, typer.Option(help=f"2-D embedding: {', '.join(METHODS)}.")] = "tsne",
          tile: Annotated[int, typer.Option(min=4, help="Pixels per image in the grid picture.")] = 32,
          seed: Annotated[int, typer.Option(help="Random seed of the embedding.")] = 0,
          batch_size: BatchOption = None, workers: WorkersOption = None, chunk: ChunkOption = 256,
          model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Codes of every image, embedded in 2-D: grid.png, scatter.png, report.json, codes.npy."""
    check_method(method)
    images = open_dataset(dataset)
    with process_group(device) as ranks:
        net = open_model(model, device)
        start = time.perf_counter()
        codes = extract_codes(net, images, output, layer=layer, chunk_size=chunk, batch_size=batch_size,
                              workers=workers, ranks=ranks)
        seconds = time.perf_counter() - start
    if not ranks.main:
        return
    points = embed_2d(codes.codes, method, seed=seed, progress=True)
    labelled = bool(codes.classes) and (codes.labels >= 0).all() and len(points) > 10
    accuracy = knn_accuracy(points, codes.labels) if labelled else None
    save_array(output / f"embedding-{method}.npy", points=points)
    grid_picture(images, codes.indices, points, tile=tile, seed=seed).save(output / "grid.png")
    scatter_picture(points, codes.labels, codes.classes, title=f"{images.spec}: {codes.layer} codes, {method}",
                    accuracy=accuracy).save(output / "scatter.png")
    report = {"dataset": images.spec, "model": net.name, "layer": codes.layer, "images": int(len(codes.codes)),
              "dimensions": int(codes.codes.shape[1]), "method": method, "knn10_accuracy_2d": accuracy,
              "code_seconds_this_run": round(seconds, 2), "unreadable": [f.as_dict() for f in codes.failures]}
    save_json(output / "report.json", report)
    summary = f"; 10-NN accuracy in 2-D {accuracy:.3f}" if accuracy is not None else ""
    typer.echo(f"{output}: {len(codes.codes)} codes of {codes.layer} ({codes.codes.shape[1]}-d){summary}; "
               f"{len(codes.failures)} unreadable image(s) skipped")


@app.command("top-activations")
def top_activations(dataset: DatasetArgument, output: FolderOption,
                    layer: Annotated[list[str], typer.Option(help="Layer whose channels to rank images by; "
                                                                    "repeat for several layers in one pass.")],
                    channels: Annotated[str, typer.Option(help="Channels: all, or e.g. 0,5,9 or 0-15.")] = "all",
                    k: Annotated[int, typer.Option("--k", min=1, help="Images per channel.")] = 9,
                    batch_size: BatchOption = None, workers: WorkersOption = None, chunk: ChunkOption = 256,
                    model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Each channel's top-k images and receptive-field patches: index.json, top.npz, channels/*.png
    (in DIR for one layer, in DIR/LAYER for each of several)."""
    images = open_dataset(dataset)
    with process_group(device) as ranks:
        net = open_model(model, device)
        tops = top_images(net, images, output, layers=layer, channels=parse_channels(channels), k=k,
                          chunk_size=chunk, batch_size=batch_size, workers=workers, ranks=ranks)
    if not ranks.main:
        return
    for name, top in tops.items():
        folder = output if len(tops) == 1 else output / name
        top.save(folder, images, model=net.name, progress=True)
        typer.echo(f"{folder}: top {k} images of {len(top.channels)} channel(s) of {name}; "
                   f"{len(top.failures)} unreadable image(s) skipped")


@app.command()
def atlas(dataset: DatasetArgument, output: FolderOption,
          layer: Annotated[str, typer.Option(help="Layer whose activation vectors to map, e.g. _blocks.10.")],
          side: Annotated[int, typer.Option(min=2, max=64, help="Cells per side of the grid.")] = 12,
          target: Annotated[str | None, typer.Option("--class", help="Only images the model puts in this class "
                                                                     "(name or index).")] = None,
          per_image: Annotated[int, typer.Option(min=1, help="Activation vectors per image.")] = 1,
          method: Annotated[str, typer.Option(help=f"2-D layout: {', '.join(METHODS)}.")] = "umap",
          min_count: Annotated[int, typer.Option(min=1, help="Vectors a cell needs to be drawn.")] = 3,
          size: Annotated[int, typer.Option(min=16, max=256, help="Pixels per cell.")] = 64,
          steps: Annotated[int, typer.Option(min=1, help="Optimizer steps per cell.")] = 128,
          batch_size: BatchOption = None, workers: WorkersOption = None, chunk: ChunkOption = 256,
          model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Activation atlas: the layer's activation vectors over the dataset, laid out in 2-D, binned
    into a grid, each cell drawn as the feature visualization of its mean: atlas.png, atlas.npz."""
    check_method(method)
    images = open_dataset(dataset)
    with process_group(device) as ranks:
        net = open_model(model, device)
        if target is not None:  # an unknown class is refused before the pass
            target = int(class_indices(net, torch.zeros(1), target)[0])
        samples = activation_samples(net, images, output, layer=layer, per_image=per_image, chunk_size=chunk,
                                     batch_size=batch_size, workers=workers, ranks=ranks)
    if not ranks.main:
        return
    found = activation_atlas(net, samples, side=side, method=method, min_count=min_count, target=target, size=size,
                             steps=steps, progress=True)
    result = found.picture()
    save_array(output / "atlas.npz", cells=found.cells, counts=found.counts, directions=found.directions.numpy(),
               points=found.points)
    result.save(output / "atlas.png")
    typer.echo(f"{output / 'atlas.png'}: {result.caption}")


def parse_channels(text: str) -> list[int] | None:
    """``all`` -> None; ``0,5,9`` and ``0-15`` (inclusive) -> a list of channel numbers."""
    if text.strip().lower() == "all":
        return None
    found = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            found.extend(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ConvscopeError(f"--channels {text!r}: expected all, or numbers and ranges such as 0,5,9 or 0-15") \
            from None
    return found
