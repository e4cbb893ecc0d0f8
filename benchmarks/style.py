"""Style transfer speed on the default model, against the PyTorch neural-style tutorial's recipe, in one run.

Run: python benchmarks/style.py [--evals 300] [--sizes 256 512]

The tutorial ("Neural Transfer Using PyTorch", pytorch.org/tutorials/advanced/neural_style_tutorial)
is re-implemented here as written: MSE content loss, Gram matrices divided by a*b*c*d with MSE,
style weight 1e6, ``optim.LBFGS([image])`` with its defaults (20 iterations per step), the image
clamped at the start of each closure, the network cut after its last loss layer. It runs on the
same network and layers as convscope (EfficientNet-Lite0's default style layers), so the rows
compare the two loops on the same objective:

* seconds per evaluation (one forward + backward), at each size;
* time to reach the tutorial's final loss after ``--evals`` evaluations: convscope's render loop
  (L-BFGS, the same objective written as a convscope Objective) is timed until its loss is as low,
  on the image's own size and coarse to fine (half the evaluations first on a half-size image);
* the feed-forward network (StyleNetwork, 16 channels) per image, against the optimization.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
import torch.nn.functional as F

import convscope as cs
from convscope.core.objectives import custom
from convscope.optimize.fast_style import StyleNetwork, apply_style
from convscope.optimize.params import PixelImage
from convscope.optimize.render import render
from convscope.optimize.style import default_layers
from convscope.samples import style_image

STYLE_WEIGHT, CONTENT_WEIGHT = 1e6, 1.0


class _Stop(Exception):
    pass


def tutorial_features(model: cs.Model, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Activations of ``layers``; the forward stops after the last of them (the tutorial's cut model)."""
    modules = dict(model.net.named_modules())
    found: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(module, inputs, output):
            found[name] = output
            if len(found) == len(layers):
                raise _Stop
        return hook
    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    try:
        model(x)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return found


def tutorial_gram(a: torch.Tensor) -> torch.Tensor:
    b, c, h, w = a.shape
    flat = a.reshape(b * c, h * w)
    return flat @ flat.T / (b * c * h * w)


def tutorial_loss(acts, content_code, style_grams, content_layer) -> torch.Tensor:
    style = sum(F.mse_loss(tutorial_gram(acts[layer]), target) for layer, target in style_grams.items())
    return CONTENT_WEIGHT * F.mse_loss(acts[content_layer], content_code) + STYLE_WEIGHT * style


def targets(model, content, style, layers):
    with torch.no_grad():
        content_code = tutorial_features(model, content, [layers.content])[layers.content]
        codes = tutorial_features(model, style, list(layers.style))
    return content_code, {layer: tutorial_gram(code) for layer, code in codes.items()}


def run_tutorial(model, content, style, evals: int) -> tuple[list[float], list[float]]:
    """The tutorial's loop: returns the loss and the elapsed time at each evaluation."""
    layers = default_layers(model)
    content_code, grams = targets(model, content, style, layers)
    names = list(dict.fromkeys([*layers.style, layers.content]))
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image])
    losses, times, started = [], [], time.perf_counter()

    def closure():
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        loss = tutorial_loss(tutorial_features(model, image, names), content_code, grams, layers.content)
        loss.backward()
        losses.append(loss.item())
        times.append(time.perf_counter() - started)
        return loss
    for parameter in model.net.parameters():
        parameter.requires_grad_(False)
    while len(losses) <= evals:
        optimizer.step(closure)
    with torch.no_grad():
        image.clamp_(0, 1)
    return losses, times


def run_convscope(model, content, style, evals: int, coarse: int = 0) -> tuple[list[float], list[float]]:
    """convscope's render loop on the same objective (L-BFGS, one evaluation per step). With
    ``coarse``, that many evaluations first optimize a half-size image (coarse to fine, as
    ``stylize(octaves=2)`` does); the times include them, the losses are the full-size ones."""
    layers = default_layers(model)
    start, times, started = content, [], time.perf_counter()
    if coarse:
        half = [F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True) for x in (content, style)]
        small = render(model, tutorial_objective(model, *half, layers), PixelImage(half[0]), steps=coarse,
                       optimizer="lbfgs", lr=1.0)
        start = F.interpolate(small.images, size=content.shape[-2:], mode="bilinear", align_corners=False)
    result = render(model, tutorial_objective(model, content, style, layers), PixelImage(start), steps=evals,
                    optimizer="lbfgs", lr=1.0, every=1,
                    callback=lambda step, images: times.append(time.perf_counter() - started))
    return [-float(s) for s in result.scores[:, 0]], times


def tutorial_objective(model, content, style, layers):
    """The tutorial's loss, negated, as a convscope Objective."""
    content_code, grams = targets(model, content, style, layers)
    reads = tuple(dict.fromkeys([*layers.style, layers.content]))
    return custom(lambda acts: -tutorial_loss(acts, content_code, grams, layers.content).view(1), reads,
                  "tutorial loss")


def time_to(losses: list[float], times: list[float], goal: float) -> float | None:
    return next((t for loss, t in zip(losses, times) if loss <= goal), None)


def per_image(fn, repeats: int = 5) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    model = cs.load_model(device="cpu")
    print(f"device: cpu, threads: {torch.get_num_threads()}, torch {torch.__version__}; "
          f"{model.name}, cat + stained-glass, {args.evals} evaluations")
    print(f"{'size':>5} {'work':<44} {'convscope':>10} {'tutorial':>10} {'speed-up':>9}")
    for size in args.sizes:
        content = cs.sample_image("cat", size=size)
        style = style_image("stained-glass", size=size)
        ours, our_times = run_convscope(model, content, style, args.evals)
        theirs, their_times = run_tutorial(model, content, style, args.evals)
        mine, tut = our_times[-1] / len(our_times), their_times[-1] / len(their_times)
        print(f"{size:>5} {'seconds per evaluation':<44} {mine:>10.3f} {tut:>10.3f} {tut / mine:>8.2f}x")
        goal = theirs[-1]
        coarse, coarse_times = run_convscope(model, content, style, args.evals, coarse=args.evals // 2)
        for label, losses, times in (("same loop", ours, our_times), ("coarse to fine", coarse, coarse_times)):
            reached = time_to(losses, times, goal)
            shown = f"{reached:>10.1f}" if reached is not None else f"{'not yet':>10}"
            ratio = f"{their_times[-1] / reached:>8.2f}x" if reached else f"{'-':>9}"
            print(f"{size:>5} {f'seconds to tutorial final loss, {label}':<44} {shown} {their_times[-1]:>10.1f} "
                  f"{ratio}   (final {losses[-1]:.3g} vs {goal:.3g})")
        network = StyleNetwork().eval()
        forward = per_image(functools.partial(apply_style, network, content))
        optimization = our_times[-1]
        print(f"{size:>5} {'feed-forward s/image vs optimization s/image':<44} {forward:>10.3f} {optimization:>10.1f} "
              f"{optimization / forward:>8.0f}x")


if __name__ == "__main__":
    main()
