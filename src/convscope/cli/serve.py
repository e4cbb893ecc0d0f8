"""``convscope serve``: the local web explorer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convscope.cli.app import DeviceOption, app, open_model
from convscope.errors import ConvscopeError
from convscope.models import DEFAULT_MODEL
from convscope.web.guard import LOCAL_NAMES


ModelsOption = Annotated[list[str] | None, typer.Option(
    "--model", "-m", help="Model name, NAME=WEIGHTS.pth, or a weights file; repeat it to pick between models in the "
                          "page (the first is the default).")]


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on; another than 127.0.0.1 only when you "
                                                 "mean to share the explorer.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
          index: Annotated[Path | None, typer.Option(help="Folder written by `convscope top-activations` "
                                                                   "(for the first model).")] = None,
          allow_host: Annotated[list[str] | None, typer.Option(help="Another host name the page may be opened "
                                                                    "under (repeatable).")] = None,
          workers: Annotated[int, typer.Option(min=1, max=16, help="Heavy jobs running at once.")] = 2,
          microscope: Annotated[Path | None, typer.Option(help="Folder written by `convscope microscope` (for the "
                                                               "first model): its pages, linked from each channel.")]
          = None,
          model: ModelsOption = None, device: DeviceOption = "auto") -> None:
    """Explore the model in the browser: predictions, layers, activations, attribution, DeepDream,
    style, inversion and adversarial examples."""
    import uvicorn

    from convscope.web.app import create_app
    from convscope.web.explorer import Explorer, Settings

    if index is not None and not (index / "index.json").is_file():
        raise ConvscopeError(f"--index {index}: no index.json there; make one with `convscope top-activations`")
    if microscope is not None and not (microscope / "index.html").is_file():
        raise ConvscopeError(f"--microscope {microscope}: no index.html there; make one with `convscope microscope`")
    names = list(dict.fromkeys(model or [DEFAULT_MODEL]))
    settings = Settings(workers=workers)
    explorers = [Explorer(open_model(name, device), index=index if k == 0 else None,
                          microscope=microscope if k == 0 else None, settings=settings) for k, name in enumerate(names)]
    hosts = (*LOCAL_NAMES, *(allow_host or ()), *(() if host in ("0.0.0.0", "::") else (host,)))
    if host not in LOCAL_NAMES:
        typer.echo(f"warning: listening on {host}: anyone who can reach this address can use the explorer", err=True)
    typer.echo(f"convscope explorer on http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/")
    for k, name in enumerate(names[1:], 1):
        typer.echo(f"  {name}: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/models/{k}/")
    uvicorn.run(create_app(explorers, hosts=hosts), host=host, port=port, log_level="warning")
