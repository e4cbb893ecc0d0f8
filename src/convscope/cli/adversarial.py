"""Adversarial commands: attack, fool, linear-demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from convscope.cli.app import DeviceOption, ModelOption, OutputOption, app, check_output, open_model
from convscope.core.images import load_image
from convscope.core.render import labelled, picture
from convscope.errors import ConvscopeError
from convscope.models import DEFAULT_MODEL
from convscope.optimize.adversarial import METHODS, NORMS
from convscope.optimize.adversarial import attack as run_attack
from convscope.optimize.fooling import STARTS
from convscope.optimize.fooling import fool as fool_images
from convscope.optimize.linear_demo import linear_demo as run_linear_demo


@app.command()
def attack(image: Annotated[Path, typer.Argument(help="Image file.")], output: OutputOption,
           method: Annotated[str, typer.Option(help=f"{'|'.join(METHODS)}.")] = "pgd",
           eps: Annotated[str, typer.Option(help="Budget (fgsm, pgd): a number or a fraction like 2/255.")] = "2/255",
           norm: Annotated[str, typer.Option(help=f"pgd ball: {'|'.join(NORMS)}.")] = "linf",
           target: Annotated[str | None, typer.Option(help="Class to reach (name or index); untargeted if left "
                                                           "out (cw and lbfgs need one).")] = None,
           steps: Annotated[int | None, typer.Option(help="Iterations (the method's default if left out).")] = None,
           save_adversarial: Annotated[Path | None, typer.Option(help="Also save the adversarial image (PNG).")]
           = None,
           as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
           model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Adversarial example: original | adversarial | magnified change, with labels and norms."""
    check_output(output)
    if save_adversarial is not None:
        check_output(save_adversarial)
    net = open_model(model, device)
    options = {"steps": steps} if steps is not None else {}
    if method in ("fgsm", "pgd"):
        options["eps"] = parse_fraction(eps)
    if method == "fgsm":
        options.pop("steps", None)
    if method == "pgd":
        options["norm"] = norm
    result = run_attack(net, load_image(image, size=net.input_size), method, target=target, **options)
    labelled(result.picture(net)).save(output)
    if save_adversarial is not None:
        picture(result.adversarial[0]).save(save_adversarial)
    info = result.summary(net)[0]
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(f"{output}: {result.picture(net).caption}")


@app.command()
def fool(output: OutputOption,
         target: Annotated[str, typer.Option(help="Class the model should see (name or index).")],
         start: Annotated[str, typer.Option(help=f"{'|'.join(STARTS)}.")] = "noise",
         pattern: Annotated[bool, typer.Option(help="A regular pattern (Fourier, transforms) instead of noise.")]
         = False,
         confidence: Annotated[float, typer.Option(help="Probability to reach on the saved 8-bit image.")] = 0.995,
         seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
         model: ModelOption = DEFAULT_MODEL, device: DeviceOption = "auto") -> None:
    """Fooling image (Nguyen et al.): noise the model takes for CLASS (-o writes the image itself)."""
    check_output(output)
    net = open_model(model, device)
    result = fool_images(net, [target], start=start, pattern=pattern, confidence=confidence, seed=seed,
                         progress=True)
    picture(result.images[0]).save(output)
    typer.echo(f"{output}: {result.names[0]} {100 * float(result.confidence[0]):.2f}% after {result.steps} steps")


@app.command("linear-demo")
def linear_demo(output: OutputOption) -> None:
    """FGSM on a softmax regression and on the digits CNN: accuracy against eps, and the change."""
    check_output(output)
    demo = run_linear_demo()
    shown = demo.picture()
    shown.save(output)
    typer.echo(f"{output}: {shown.caption}")


def parse_fraction(text: str) -> float:
    """``"2/255"`` or ``"0.01"`` -> a positive float."""
    try:
        top, _, bottom = text.partition("/")
        value = float(top) / (float(bottom) if bottom else 1.0)
    except (ValueError, ZeroDivisionError):
        raise ConvscopeError(f"--eps {text!r}: give a number or a fraction such as 2/255") from None
    if not 0 < value <= 1:
        raise ConvscopeError(f"--eps {text}: accepted values are in (0, 1] (pixels are in 0..1)")
    return value
