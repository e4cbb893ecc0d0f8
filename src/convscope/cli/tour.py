"""``convscope tour``: the gallery of everything, the package's main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convscope.cli.app import DeviceOption, ModelOption, app
from convscope.models import DEFAULT_MODEL
from convscope.tour import run_tour


@app.command()
def tour(output: Annotated[Path, typer.Option("--output", "-o",
                                              help="Folder for index.html and pictures.")] = Path("tour"),
         full: Annotated[bool, typer.Option(help="Use the papers' settings (slower).")] = False,
         model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Run every method on the bundled photos and write an HTML gallery."""
    index = run_tour(output, model=model, full=full, device=device)
    typer.echo(f"wrote {index}")
