"""``convscope microscope``: a static site with a page for every unit of chosen layers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from convscope.cli.app import DeviceOption, ModelOption, app, open_model
from convscope.data.datasets import SPECS
from convscope.data.distributed import process_group
from convscope.microscope import build_microscope
from convscope.microscope.units import UnitSettings
from convscope.models import DEFAULT_MODEL


@app.command()
def microscope(output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the site (run again to "
                                                                         "resume).")],
               layers: Annotated[str, typer.Option(help="Layers, comma-separated, e.g. _blocks.6,_blocks.10.")],
               dataset: Annotated[str | None, typer.Option(help=f"Images for each unit's top and bottom patches: "
                                                                 f"{SPECS}.")] = None,
               k: Annotated[int, typer.Option("--k", min=1, help="Dataset images per unit, top and bottom.")] = 9,
               atlas: Annotated[int, typer.Option(min=0, max=32, help="With --dataset: each layer's activation "
                                                                      "atlas on a grid of this side (0: none).")] = 10,
               size: Annotated[int, typer.Option(min=32, max=512, help="Side of each visualization.")] = 96,
               steps: Annotated[int, typer.Option(min=1, help="Optimizer steps per visualization.")] = 128,
               diverse: Annotated[int, typer.Option(min=0, max=8, help="Diverse visualizations per unit.")] = 2,
               chunk: Annotated[int, typer.Option(min=1, help="Units per saved piece of work (a rerun resumes "
                                                               "from the last saved piece).")] = 16,
               batch: Annotated[int | None, typer.Option(min=1, help="Images per optimization (default: 16 on a "
                                                                      "CPU, where it runs fastest; 64 on a GPU).")] = None,
               model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Every unit of the layers: its feature visualizations (positive, negative, diverse), its
    DeepDream of a photo and, with --dataset, its top and bottom patches and each layer's activation
    atlas; writes OUTPUT/index.html.
    Runs unchanged under ``torchrun --nproc_per_node N``."""
    names = [name.strip() for name in layers.split(",") if name.strip()]
    start = time.perf_counter()
    with process_group(device) as ranks:
        net = open_model(model, device)
        settings = UnitSettings(size=size, steps=steps, diverse=diverse, chunk=chunk,
                                batch=batch or (64 if net.device.type == "cuda" else 16))
        page = build_microscope(net, names, output, dataset=dataset, k=k, atlas=atlas, settings=settings,
                                ranks=ranks)
    if ranks.main:
        typer.echo(f"{page}: {len(names)} layer(s) in {time.perf_counter() - start:.0f} s; open it in a browser, "
                   f"or `convscope serve --microscope {output}`")
