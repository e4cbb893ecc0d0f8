"""Style transfer commands: style (optimization), style-train and style-apply (feed-forward)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convscope.cli.app import DeviceOption, ModelOption, OutputOption, app, check_output, open_model
from convscope.core.images import load_folder, load_image
from convscope.core.render import picture
from convscope.errors import ConvscopeError
from convscope.models import DEFAULT_MODEL
from convscope.models.registry import resolve_device
from convscope.optimize.fast_style import (
    apply_style,
    load_style_network,
    save_style_network,
    train_style_network,
)
from convscope.optimize.style import SMOOTHINGS, stylize
from convscope.samples import STYLES, style_image, training_photos

StyleArgument = Annotated[str, typer.Argument(help=f"Style image file, or a built-in style: {', '.join(STYLES)}.")]
ContentWeight = Annotated[float, typer.Option(help="Weight of the content loss.")]
StyleWeight = Annotated[float, typer.Option(help="Weight of the style loss.")]


@app.command()
def style(content: Annotated[Path, typer.Argument(help="Content image file.")], style_source: StyleArgument,
          output: OutputOption,
          size: Annotated[int, typer.Option(help="Longer side of the result.")] = 512,
          content_weight: ContentWeight = 1.0, style_weight: StyleWeight = 10.0,
          tv_weight: Annotated[float, typer.Option(help="Weight of the total-variation prior.")] = 1.0,
          steps: Annotated[int, typer.Option(help="Optimizer steps in all.")] = 300,
          optimizer: Annotated[str, typer.Option(help="lbfgs or adam.")] = "lbfgs",
          start: Annotated[str, typer.Option(help="content or noise.")] = "content",
          octaves: Annotated[int, typer.Option(help="Coarse-to-fine sizes (each twice the previous).")] = 1,
          preserve_color: Annotated[bool, typer.Option(help="Keep the content's colors.")] = False,
          smoothing: Annotated[str, typer.Option(help=f"Activation smoothing: {', '.join(SMOOTHINGS)}.")] = "none",
          seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
          model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Neural style transfer (Gatys et al.): CONTENT painted in the textures of STYLE."""
    check_output(output)
    _check_range(size=(size, 16, 4096), steps=(steps, 1, 100_000), octaves=(octaves, 1, 6))
    net = open_model(model, device)
    result = stylize(net, load_image(content), _style(style_source), size=size, steps=steps, optimizer=optimizer,
                     start=start, content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                     octaves=octaves, preserve_color=preserve_color, smoothing=smoothing, seed=seed, progress=True)
    picture(result.images[0]).save(output)
    typer.echo(f"{output}: {tuple(result.images.shape[-2:])} px, final objective {float(result.scores[-1, 0]):.4f}"
               + (" (interrupted)" if result.interrupted else ""))


@app.command("style-train")
def style_train(style_source: StyleArgument,
                output: Annotated[Path, typer.Option("--output", "-o", help="Where to save the network (.pt).")],
                images: Annotated[Path | None, typer.Option(help="Folder of content photos (default: the "
                                                                 "scikit-image photos).")] = None,
                steps: Annotated[int, typer.Option(help="Training steps.")] = 400,
                size: Annotated[int, typer.Option(help="Side of the training crops.")] = 256,
                batch: Annotated[int, typer.Option(help="Crops per step.")] = 4,
                width: Annotated[int, typer.Option(help="Channels of the network's first layer.")] = 16,
                content_weight: ContentWeight = 1.0, style_weight: StyleWeight = 1.0,
                seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
                model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Train a feed-forward style network (Johnson et al.) for one STYLE."""
    check_output(output, ".pt")
    _check_range(steps=(steps, 1, 1_000_000), size=(size, 32, 1024), batch=(batch, 1, 256), width=(width, 4, 128))
    net = open_model(model, device)
    photos = load_folder(images) if images is not None else training_photos(size=max(size, 256))
    network = train_style_network(net, _style(style_source, size), photos, size=size, batch=batch, steps=steps,
                                  width=width, content_weight=content_weight, style_weight=style_weight, seed=seed,
                                  progress=True)
    save_style_network(network, output)
    typer.echo(f"{output}: style network trained on {len(photos)} photos for {steps} steps")


@app.command("style-apply")
def style_apply(network: Annotated[Path, typer.Argument(help="A network saved by style-train (.pt).")],
                image: Annotated[Path, typer.Argument(help="Image file.")], output: OutputOption,
                device: DeviceOption = "auto") -> None:
    """Stylize IMAGE in one forward pass of a trained style network."""
    check_output(output)
    styled = apply_style(load_style_network(network, resolve_device(device)), load_image(image))
    picture(styled[0]).save(output)
    typer.echo(f"{output}: {tuple(styled.shape[-2:])} px")


def _style(source: str, size: int = 512):
    if Path(source).exists():
        return load_image(source)
    if source in STYLES:
        return style_image(source, size=size)
    raise ConvscopeError(f"{source}: no such file, and not a built-in style ({', '.join(STYLES)})")


def _check_range(**values: tuple[int, int, int]) -> None:
    for name, (value, low, high) in values.items():
        if not low <= value <= high:
            raise ConvscopeError(f"--{name.replace('_', '-')} {value}: accepted {low}..{high}")
