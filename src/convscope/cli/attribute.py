"""Commands that explain a prediction: saliency (every gradient method), occlusion, segment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from convscope.attribute.noise import AGGREGATES
from convscope.attribute.occlusion import DRILL
from convscope.attribute.occlusion import occlusion as occlusion_map
from convscope.attribute.saliency import METHODS
from convscope.attribute.saliency import saliency as saliency_map
from convscope.attribute.segment import segment as segment_object
from convscope.attribute.targets import GRAMMAR, class_indices
from convscope.cli.app import (DeviceOption, ModelOption, OutputOption, ReadsOption, TaskOption, app, check_output,
                               open_model, parse_position)
from convscope.core.images import load_image
from convscope.core.render import save_array, save_png
from convscope.errors import unknown_choice
from convscope.models import DEFAULT_MODEL

TargetOption = Annotated[str | None, typer.Option(
    help=f"What to explain (default: the prediction): {escape(GRAMMAR)}.")]  # escaped: rich reads [@...] as markup
ArrayOption = Annotated[Path | None, typer.Option(help="Also save the raw map (H x W float32) here.")]


@app.command()
def saliency(image: Annotated[Path, typer.Argument(help="Image file.")], output: OutputOption,
             method: Annotated[str, typer.Option(help=", ".join(METHODS))] = "gradient",
             target: TargetOption = None,
             layer: Annotated[str | None, typer.Option(help="CAM layer (several, comma-separated, are fused), "
                                                             "or the layer of --channel.")] = None,
             channel: Annotated[int | None, typer.Option(help="Explain this channel of --layer.")] = None,
             neuron: Annotated[str | None, typer.Option(help="Y,X: one unit of --channel.")] = None,
             noise: Annotated[str | None, typer.Option(help="A noise tunnel around the method: "
                                                            + ", ".join(AGGREGATES))] = None,
             samples: Annotated[int, typer.Option(help="Noisy copies per image for --noise.")] = 25,
             save_array_to: Annotated[Path | None, typer.Option("--save-array", help="Raw map, .npy.")] = None,
             model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto", task: TaskOption = None,
             model_output: ReadsOption = None) -> None:
    """Explain a prediction with a gradient method (saliency, deconvnet, guided, Grad-CAM, ...)."""
    check_output(output)
    if save_array_to:
        check_output(save_array_to, ".npy")
    if method not in METHODS:
        raise unknown_choice("method", method, METHODS)
    if noise is not None and noise not in AGGREGATES:
        raise unknown_choice("noise tunnel", noise, AGGREGATES)
    net = open_model(model, device, task=task, reads=model_output)
    x = load_image(image, size=net.input_size)
    result = saliency_map(net, x, target, method=method, layer=layer, channel=channel, position=parse_position(neuron),
                          noise=noise, samples=samples)
    picture = result.picture()
    if save_array_to:
        save_array(save_array_to, map=result.map[0].numpy())
    picture.save(output)
    typer.echo(f"{output}: {picture.caption}")


@app.command()
def occlusion(image: Annotated[Path, typer.Argument(help="Image file.")], output: OutputOption,
              target: TargetOption = None,
              patch: Annotated[int, typer.Option(help="Patch side in pixels.")] = 16,
              stride: Annotated[int, typer.Option(help="Step between patch positions.")] = 8,
              fill: Annotated[str, typer.Option(help="zero, grey, mean or blur.")] = "grey",
              mode: Annotated[str, typer.Option(help="exact, fast or brute.")] = "exact",
              drill: Annotated[float, typer.Option(help="fast mode: share of positions computed exactly after the "
                                                        "coarse pass, 0-1 (more: slower, closer to exact).")] = DRILL,
              precision: Annotated[str, typer.Option(help="fast mode: float32, float16 or bfloat16 arithmetic "
                                                            "(half precision pays on GPUs).")] = "float32",
              save_array_to: Annotated[Path | None, typer.Option("--save-array", help="Maps, .npz.")] = None,
              model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto", task: TaskOption = None,
              model_output: ReadsOption = None) -> None:
    """Slide a patch over the image and map the target's probability or score (Zeiler & Fergus)."""
    check_output(output)
    if save_array_to:
        check_output(save_array_to, ".npz")
    net = open_model(model, device, task=task, reads=model_output)
    x = load_image(image, size=net.input_size)
    result = occlusion_map(net, x, target, patch=patch, stride=stride, fill=fill, mode=mode, drill=drill,
                          precision=precision, progress=True)
    picture = result.picture()
    if save_array_to:
        save_array(save_array_to, map=result.attribution[0].numpy(), probabilities=result.probabilities[0].numpy(),
                   baseline=result.baseline.numpy())
    picture.save(output)
    typer.echo(f"{output}: {picture.caption}")


@app.command()
def segment(image: Annotated[Path, typer.Argument(help="Image file.")],
            output: Annotated[Path, typer.Option("--output", "-o", help="Mask PNG (white = object).")],
            target: TargetOption = None, model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Segment the object of a class from its saliency map (seeds + GrabCut)."""
    check_output(output)
    net = open_model(model, device)
    x = load_image(image, size=net.input_size)
    result = segment_object(net, x, class_indices(net, x, target))
    save_png((result.masks[0].numpy() * 255).astype("uint8"), output)
    typer.echo(f"{output}: {result.picture().caption}")
