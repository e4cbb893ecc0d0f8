"""Commands that optimize the image: visualize (classes, channels, neurons), invert and dream."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convscope.cli.app import DeviceOption, ModelOption, OutputOption, app, check_output, open_model, parse_box, parse_position
from convscope.core.images import load_image
from convscope.core.render import labelled, picture
from convscope.errors import ConvscopeError, unknown_choice
from convscope.models import DEFAULT_MODEL
from convscope.optimize.dream import dream as dream_image
from convscope.optimize.invert import invert as invert_image
from convscope.optimize.render import Rendering
from convscope.optimize.visualize import RECIPES, visualize_box, visualize_channel, visualize_class, visualize_target

#: ``--param`` picks the recipe that optimizes that parametrization.
PARAM_RECIPES = {"fourier": "fourier", "pixel": "yosinski"}
FigureOption = Annotated[Path | None, typer.Option(help="Also write a labelled figure (PNG) here.")]
StepsOption = Annotated[int | None, typer.Option(help="Optimizer steps.")]
SeedOption = Annotated[int, typer.Option(help="Random seed (same seed, same image on the CPU).")]


@app.command()
def visualize(output: OutputOption,
              target: Annotated[str | None, typer.Option(
                  help="Class name or index to visualize, or an output target: sigmoid:CLASS, up, down, "
                       "region:CLASS@MASK.png (a segmenter's class over the mask).")] = None,
              box: Annotated[str | None, typer.Option(
                  help="X1,Y1,X2,Y2: a detector's box (input pixels) where an object of --target is drawn.")] = None,
              layer: Annotated[str | None, typer.Option(help="Layer of --channel.")] = None,
              channel: Annotated[int | None, typer.Option(help="Channel of --layer to visualize.")] = None,
              neuron: Annotated[str | None, typer.Option(help="Y,X: one unit of --channel.")] = None,
              param: Annotated[str, typer.Option(help="fourier (decorrelated, robust) or pixel (Yosinski priors).")]
              = "fourier",
              recipe: Annotated[str | None, typer.Option(help=f"Overrides --param: {', '.join(RECIPES)}.")] = None,
              steps: StepsOption = None,
              size: Annotated[int | None, typer.Option(help="Image side (default: 224 for classes, 128 for units).")]
              = None,
              octaves: Annotated[int, typer.Option(help="Optimize at this many sizes, smallest first.")] = 1,
              seed: SeedOption = 0, figure: FigureOption = None,
              model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """The image that maximizes a class or a channel/neuron (-o writes the image itself)."""
    _check_outputs(output, figure)
    if (target is None) == (channel is None):
        raise ConvscopeError("give either --target CLASS or --layer L --channel C")
    if param not in PARAM_RECIPES:
        raise unknown_choice("parametrization", param, PARAM_RECIPES)
    net = open_model(model, device)
    if octaves < 1:
        raise ConvscopeError(f"--octaves {octaves}: give 1 or more")
    options = dict(recipe=recipe or PARAM_RECIPES[param], steps=steps, seed=seed, octaves=octaves, progress=True)
    if size is not None:
        options["size"] = size
    if box is not None:
        if target is None:
            raise ConvscopeError("--box needs the class to draw there: --target CLASS")
        result = visualize_box(net, parse_box(box, "--box"), target, **options)
    elif target is not None and (":" in target or target in ("up", "down")):
        result = visualize_target(net, target, **options)
    elif target is not None:
        result = visualize_class(net, [target], **options)
    else:
        if layer is None:
            raise ConvscopeError("--channel needs --layer")
        result = visualize_channel(net, layer, channel, position=parse_position(neuron), **options)
    _save(result, output, figure)


@app.command()
def invert(image: Annotated[Path, typer.Argument(help="Image file.")], output: OutputOption,
           layer: Annotated[str, typer.Option(help="Layer whose code is inverted.")],
           steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 200,
           seed: SeedOption = 0, figure: FigureOption = None,
           model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Reconstruct an image from its code at a layer (Mahendran & Vedaldi)."""
    _check_outputs(output, figure)
    net = open_model(model, device)
    x = load_image(image, size=net.input_size)
    _save(invert_image(net, x, layer, steps=steps, seed=seed, progress=True), output, figure)


@app.command()
def dream(image: Annotated[Path, typer.Argument(help="Image file (kept at its full resolution).")],
          output: OutputOption,
          layer: Annotated[str, typer.Option(help="Layer whose activations are boosted.")],
          channel: Annotated[int | None, typer.Option(help="Boost only this channel of --layer.")] = None,
          octaves: Annotated[int, typer.Option(help="Sizes processed, smallest first.")] = 4,
          steps: Annotated[int, typer.Option(help="Gradient steps per octave.")] = 20,
          step_size: Annotated[float, typer.Option(help="Mean pixel change per step (pixels in 0..1).")] = 0.015,
          tile: Annotated[int, typer.Option(help="Gradients are computed on tiles of at most this side.")] = 512,
          seed: SeedOption = 0, figure: FigureOption = None,
          model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """DeepDream: boost what a layer (or channel) sees, at several scales."""
    _check_outputs(output, figure)
    if octaves < 1 or steps < 1 or tile < 32:
        raise ConvscopeError("--octaves and --steps must be 1 or more, --tile 32 or more")
    net = open_model(model, device)
    x = load_image(image)
    _save(dream_image(net, x, layer, channel=channel, octaves=octaves, steps=steps, step_size=step_size,
                      tile=tile, seed=seed, progress=True), output, figure)


def _check_outputs(output: Path, figure: Path | None) -> None:
    check_output(output)
    if figure is not None:
        check_output(figure)


def _save(result: Rendering, output: Path, figure: Path | None) -> None:
    picture(result.images[0]).save(output)
    shown = result.picture()
    if figure is not None:
        labelled(shown).save(figure)
    typer.echo(f"{output}: {shown.caption}; final score {float(result.scores[-1, 0]):.3f}"
               + (" (interrupted)" if result.interrupted else ""))
