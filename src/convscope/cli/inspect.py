"""Commands that look at what is there: models, layers, classify, detect, filters, activations, blocks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from convscope.cli.app import (DeviceOption, ModelOption, OutputOption, ReadsOption, TaskOption, app, check_output,
                               open_model)
from convscope.core.images import load_image
from convscope.core.render import save_array
from convscope.core.summary import list_layers
from convscope.inspect.activations import activations as activation_maps
from convscope.inspect.blocks import building_blocks
from convscope.inspect.detections import THRESHOLD, detections_picture
from convscope.inspect.detections import detect as boxes_of
from convscope.inspect.filters import filters as filter_kernels
from convscope.inspect.predictions import classify as top_classes
from convscope.models import DEFAULT_MODEL, list_models


@app.command()
def models() -> None:
    """List the registered models."""
    for spec in list_models():
        typer.echo(f"{spec.name:<20} {spec.description}")
    typer.echo(f"{'torchvision:NAME':<20} any torchvision architecture (optional extra 'torchvision')")
    typer.echo(f"{'timm:NAME':<20} any timm architecture (optional extra 'timm')")


@app.command()
def layers(model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """List every layer with its output shape, parameters and receptive field."""
    net = open_model(model, device)
    typer.echo(f"{'layer':<44} {'type':<24} {'output':<16} {'params':>9}  {'RF':>9} {'jump':>5} {'start':>7}")
    for info in list_layers(net):
        rf = info.receptive_field
        field = "whole" if rf is None or rf.whole else f"{rf.size[0]}x{rf.size[1]}"
        jump = "" if rf is None or rf.whole else f"{rf.jump[0]:.4g}"
        start = "" if rf is None or rf.whole else f"{rf.start[0]:g}"
        shape = "x".join(map(str, info.shape))
        typer.echo(f"{info.name:<44} {info.kind:<24} {shape:<16} {info.parameters:>9,}  "
                   f"{field:>9} {jump:>5} {start:>7}")


@app.command()
def classify(images: Annotated[list[Path], typer.Argument(help="Image files.")],
             top: Annotated[int, typer.Option(min=1, help="How many classes per image.")] = 5,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
             model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto", task: TaskOption = None,
             model_output: ReadsOption = None) -> None:
    """Print the top classes of each image."""
    net = open_model(model, device, task=task, reads=model_output)
    results = []
    for path in images:
        x = load_image(path, size=net.input_size)
        results.append({"image": str(path), "predictions": [p.as_dict() for p in top_classes(net, x, top=top)[0]]})
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for result in results:
        typer.echo(result["image"])
        for p in result["predictions"]:
            typer.echo(f"  {p['probability']:7.2%}  {p['label']} ({p['index']})")


@app.command()
def detect(images: Annotated[list[Path], typer.Argument(help="Image files.")],
           threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Lowest score shown.")] = THRESHOLD,
           picture: Annotated[Path | None, typer.Option("--picture", help="PNG of the first image with its "
                                                         "boxes.")] = None,
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
           model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto", task: TaskOption = None,
           model_output: ReadsOption = None) -> None:
    """Print a detector's boxes, numbered best first as --target box:K names them."""
    if picture is not None:
        check_output(picture)
    net = open_model(model, device, task=task, reads=model_output)
    results, first = [], None
    for path in images:
        x = load_image(path, size=net.input_size)
        first = x if first is None else first
        results.append({"image": str(path), "boxes": [d.as_dict() for d in boxes_of(net, x, threshold=threshold)[0]]})
    if picture is not None:
        detections_picture(net, first, threshold=threshold).save(picture)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for result in results:
        typer.echo(f"{result['image']}: {len(result['boxes'])} boxes above score {threshold:g}")
        for k, d in enumerate(result["boxes"]):
            x1, y1, x2, y2 = d["box"]
            typer.echo(f"  box:{k:<3} {d['score']:6.2f}  {d['label']} ({d['index']})  at x {x1:.1f}-{x2:.1f}, y {y1:.1f}-{y2:.1f}")


@app.command()
def filters(output: OutputOption,
            layer: Annotated[str | None, typer.Option(help="Convolution layer (default: the first).")] = None,
            model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Save a convolution layer's kernels as an image grid."""
    check_output(output)
    result = filter_kernels(open_model(model, device), layer).grid()
    result.save(output)
    typer.echo(f"{output}: {result.caption}")


@app.command()
def activations(image: Annotated[Path, typer.Argument(help="Image file.")],
                layer: Annotated[str, typer.Option(help="Layer whose maps to show.")],
                output: OutputOption,
                channel: Annotated[int | None, typer.Option(help="Overlay this channel on the image.")] = None,
                model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Save a layer's activation maps (strongest first), or one channel over the image."""
    check_output(output)
    net = open_model(model, device)
    maps = activation_maps(net, load_image(image, size=net.input_size), layer)
    result = maps.overlay(channel) if channel is not None else maps.grid()
    result.save(output)
    typer.echo(f"{output}: {result.caption}")


@app.command()
def blocks(image: Annotated[Path, typer.Argument(help="Image file.")],
           layer: Annotated[str, typer.Option(help="Layer to split into neuron groups, e.g. _blocks.10.")],
           output: OutputOption,
           target: Annotated[str | None, typer.Option(help="Class name or index (default: the top class).")] = None,
           groups: Annotated[int, typer.Option(min=1, max=16, help="Neuron groups (NMF components).")] = 6,
           steps: Annotated[int, typer.Option(min=1, help="Integrated-Gradients points at the layer.")] = 32,
           save_array_to: Annotated[Path | None, typer.Option(
               "--save-array", help="Also save .npz: group maps and directions, group scores, and the layer's "
                                    "spatial (h x w) and channel (C) attribution.")] = None,
           model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Building blocks: a layer's neuron groups on the image (where each is active, what it looks
    like) and each group's share of the class score."""
    check_output(output)
    if save_array_to:
        check_output(save_array_to, ".npz")
    net = open_model(model, device)
    found = building_blocks(net, load_image(image, size=net.input_size), layer, target, groups=groups, steps=steps)
    result = found.picture()
    if save_array_to:
        attribution = found.attribution
        save_array(save_array_to, maps=found.groups.maps.numpy(), directions=found.groups.directions.numpy(),
                   scores=found.scores.numpy(), spatial=attribution.spatial[0].numpy(),
                   channels=attribution.channels[0].numpy())
    result.save(output)
    typer.echo(f"{output}: {result.caption}")
    channels = found.attribution.channels[0]
    strongest = channels.abs().argsort(descending=True)[:5].tolist()
    typer.echo("channels that carry it most: " + ", ".join(f"{c} ({float(channels[c]):+.2f})" for c in strongest))
