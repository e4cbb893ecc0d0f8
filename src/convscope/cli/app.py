"""The Typer application and the options every command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convscope.errors import ConvscopeError, shorten
from convscope.models import DEFAULT_MODEL, Model, load_model
from convscope.models.outputs import TASKS, check_task

app = typer.Typer(help="See inside convolutional networks.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model name, NAME=WEIGHTS.pth, package.module:factory[=WEIGHTS.pth], or a weights file.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
OutputOption = Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")]
TaskOption = Annotated[str | None, typer.Option("--task", help=f"What the model does, where its output does not "
                                                f"tell: {', '.join(TASKS)}.")]
ReadsOption = Annotated[str | None, typer.Option("--model-output", help="Which tensor of what the network returns "
                                                 "to explain: a key (out, logits ...) or an index; found when left "
                                                 "out.")]


def open_model(model: str = DEFAULT_MODEL, device: str = "auto", *, task: str | None = None,
               reads: str | None = None) -> Model:
    """Loads the model named on the command line; ``task`` and ``reads`` (``--task``,
    ``--model-output``) override what the model says or finds."""
    loaded = load_model(model, device=device)
    if task is not None:
        loaded.task = check_task(task)
    if reads is not None:
        loaded.output = int(reads) if reads.lstrip("-").isdigit() else reads
    return loaded


def check_output(path: Path, suffix: str = ".png") -> Path:
    """Refuses an output path before any work is done, so a mistake costs nothing."""
    if path.suffix.lower() != suffix:
        raise ConvscopeError(f"{path}: the output must be a {suffix} file")
    if not path.parent.is_dir():
        raise ConvscopeError(f"{path.parent}: no such folder for the output")
    return path


def parse_box(text: str, option: str) -> tuple[float, float, float, float]:
    """``"X1,Y1,X2,Y2"`` -> four pixel coordinates, the first corner above and left of the second."""
    try:
        x1, y1, x2, y2 = (float(part) for part in text.split(","))
    except ValueError:
        raise ConvscopeError(f"{option} {shorten(text)!r}: a box is four numbers X1,Y1,X2,Y2") from None
    if not (x1 < x2 and y1 < y2):
        raise ConvscopeError(f"{option} {shorten(text)!r}: a box needs X1 < X2 and Y1 < Y2")
    return x1, y1, x2, y2


def parse_position(text: str | None) -> tuple[int, int] | None:
    """``"Y,X"`` -> ``(y, x)``; None stays None."""
    if text is None:
        return None
    try:
        y, x = (int(part) for part in text.split(","))
    except ValueError:
        raise ConvscopeError(f"--neuron {text!r}: expected Y,X, e.g. 3,4") from None
    return y, x
