"""``convscope evaluate``: which attribution map to trust, on an image or a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from convscope.attribute.saliency import METHODS
from convscope.attribute.targets import GRAMMAR
from convscope.cli.app import DeviceOption, ModelOption, ReadsOption, TaskOption, app, open_model, parse_box
from convscope.core.images import load_image
from convscope.data.datasets import SPECS
from convscope.data.distributed import process_group
from convscope.errors import ConvscopeError, unknown_choice
from convscope.evaluate.dataset import evaluate_dataset
from convscope.evaluate.metrics import METRICS
from convscope.evaluate.pointing import box_masks
from convscope.evaluate.runner import DEFAULT_METHODS, DEFAULT_METRICS, evaluate as evaluate_batch
from convscope.models import DEFAULT_MODEL


@app.command()
def evaluate(source: Annotated[str, typer.Argument(help=f"An image file, or a dataset: {SPECS}.")],
             output: Annotated[Path, typer.Option("--output", "-o", help="Folder for report.json, table.md, "
                                                  "curves.png and maps.png (a dataset run resumes there).")],
             methods: Annotated[str, typer.Option(help="Comma-separated: " + ", ".join(METHODS))]
             = ",".join(DEFAULT_METHODS),
             metrics: Annotated[str, typer.Option(help="Comma-separated: " + ", ".join(METRICS))]
             = ",".join(DEFAULT_METRICS),
             target: Annotated[str | None, typer.Option(help=f"What to explain, images only: {GRAMMAR}.")] = None,
             truth: Annotated[str | None, typer.Option(help="Where the object is, for the pointing games: a mask "
                                                       "image (white on black) or a box X1,Y1,X2,Y2 in pixels of "
                                                       "the image at the model's input size.")] = None,
             chunk: Annotated[int, typer.Option(min=1, help="Dataset images per resumable unit of work.")] = 32,
             model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto", task: TaskOption = None,
             model_output: ReadsOption = None) -> None:
    """Scores attribution methods with faithfulness, randomization, robustness and complexity metrics."""
    chosen_methods, chosen_metrics = _names(methods, METHODS, "method"), _names(metrics, METRICS, "metric")
    if output.exists() and not output.is_dir():
        raise ConvscopeError(f"{output}: exists and is not a folder; give a folder for the report")
    is_image = Path(source).is_file()
    with process_group(device) as ranks:
        net = open_model(model, device, task=task, reads=model_output)
        if is_image:
            x = load_image(source, size=net.input_size)
            report = evaluate_batch(net, x, chosen_methods, chosen_metrics, target, progress=True,
                                    truth=None if truth is None else ground_truth(truth, tuple(x.shape[-2:])))
        else:
            if target is not None or truth is not None:
                raise ConvscopeError("--target and --truth apply to one image; a dataset explains each image's "
                                     "prediction")
            report = evaluate_dataset(net, source, output, chosen_methods, chosen_metrics, chunk_size=chunk,
                                      ranks=ranks)
    if not ranks.main:
        return
    report.save(output)
    typer.echo(report.markdown())
    typer.echo(f"{output}: report.json, table.md, maps.png{', curves.png' if report.curves else ''} "
               f"({len(report.labels)} image(s))")


def ground_truth(text: str, size: tuple[int, int]) -> torch.Tensor:
    """``(1, H, W)`` bool: the mask image ``text`` names (resized to ``size``), or the box
    ``X1,Y1,X2,Y2`` it gives in pixels."""
    if len(text.split(",")) == 4 and not Path(text).is_file():
        return box_masks(torch.tensor([parse_box(text, "--truth")]), size)
    return load_image(text, size=size).mean(1) > 0.5


def _names(text: str, accepted, what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in accepted:
            raise unknown_choice(what, name, accepted)
    if not names:
        raise ConvscopeError(f"give at least one {what}; accepted: {', '.join(accepted)}")
    return names
