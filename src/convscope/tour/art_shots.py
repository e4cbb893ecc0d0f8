"""Tour section: DeepDream, neural style transfer (plain and softmax-smoothed Gram matrices) and a
fast style network trained on the spot."""

from __future__ import annotations

import time

import torch

from convscope.core.forward import score
from convscope.core.images import resize
from convscope.core.objectives import layer_norm
from convscope.core.render import Picture, grid, picture
from convscope.optimize.dream import dream
from convscope.optimize.fast_style import apply_style, train_style_network
from convscope.optimize.style import StyleLoss, stylize
from convscope.samples import sample_image, style_image, training_photos
from convscope.tour.optimize_shots import _layers
from convscope.tour.runner import Shot, TourContext

SECTION = "DeepDream and style transfer"
DREAM_LAYERS = ("_blocks.5", "_blocks.9")
STYLES = ("stained-glass", "brushstrokes")


def art_shots(context: TourContext) -> list[Shot]:
    model, full = context.model, context.full
    side = _side(model, 512 if full else 256)
    shots = [Shot(SECTION, "DeepDream (cat)", lambda: _dreams(model, _side(model, 448), full))]
    for name in STYLES:
        shots.append(Shot(SECTION, f"Style transfer: {name}", lambda name=name: _style(
            model, name, side, 400 if full else 200)))
    shots.append(Shot(SECTION, "Plain vs softmax-smoothed Gram matrices", lambda: _smoothing(model, side)))
    shots.append(Shot(SECTION, "Fast style network: unseen photos in one forward pass",
                      lambda: _fast(model, side, 1000 if full else 300)))
    return shots


def _side(model, side: int) -> int:
    """``side`` for ImageNet-sized models, proportionally smaller for small inputs (at least 16)."""
    return max(16, round(side * min(1.0, max(model.input_size) / 224)))


def _dreams(model, side: int, full: bool) -> Picture:
    cat = resize(sample_image("cat"), (side * 3 // 4, side))
    layers = _layers(model, DREAM_LAYERS)
    results = [dream(model, cat, layer, steps=40 if full else 20).images for layer in layers]
    gains = [_gain(model, layer, cat, dreamed) for layer, dreamed in zip(layers, results)]
    caption = "original | " + " | ".join(f"{layer} (mean square x{gain:.1f})" for layer, gain in zip(layers, gains))
    return picture(grid(torch.cat([cat, *results]), columns=len(layers) + 1, padding=4), caption,
                   layers=layers, gains=gains)


def _gain(model, layer: str, before: torch.Tensor, after: torch.Tensor) -> float:
    with torch.no_grad():
        return float(score(model, after, layer_norm(layer)) / score(model, before, layer_norm(layer)))


def _style(model, name: str, side: int, steps: int) -> Picture:
    content, style = sample_image("cat"), style_image(name, size=side)
    result = stylize(model, content, style, size=side, steps=steps)
    scaled = resize(content, result.images.shape[-2:])
    loss = StyleLoss(model, style, size=tuple(scaled.shape[-2:]))
    before, after = loss.measure(scaled, scaled), loss.measure(result.images, scaled)
    drop = 1 - after["style"] / before["style"]
    tiles = [resize(x, scaled.shape[-2:]) for x in (scaled, style, result.images)]
    return picture(grid(torch.cat(tiles), columns=3, padding=4),
                   f"content | style | result ({steps} L-BFGS steps): style loss -{100 * drop:.0f}%, "
                   f"content loss {after['content']:.2f}", style_drop=drop, content_loss=after["content"])


def _smoothing(model, side: int) -> Picture:
    content, style = sample_image("cat"), style_image("stained-glass", size=side)
    images = [stylize(model, content, style, size=side, steps=150, smoothing=smoothing).images
              for smoothing in ("none", "softmax")]
    return picture(grid(torch.cat(images), columns=2, padding=4),
                   "relative Gram losses, plain (default) | with Wang et al.'s softmax smoothing")


def _fast(model, side: int, steps: int) -> Picture:
    style = style_image("stained-glass", size=side)
    started = time.perf_counter()
    network = train_style_network(model, style, training_photos(size=side), size=max(16, side // 2), steps=steps)
    trained = time.perf_counter() - started
    photos = [sample_image(name, size=side) for name in ("cat", "coffee")]  # neither is a training photo
    started = time.perf_counter()
    styled = [apply_style(network, photo) for photo in photos]
    per_image = (time.perf_counter() - started) / len(photos)
    loss = StyleLoss(model, style)
    drops = [1 - loss.measure(y, x)["style"] / loss.measure(x, x)["style"] for x, y in zip(photos, styled)]
    tiles = torch.cat([t for pair in zip(photos, styled) for t in pair])
    return picture(grid(tiles, columns=4, padding=4),
                   f"trained {steps} steps in {trained:.0f} s; {1000 * per_image:.0f} ms per image; "
                   f"style loss of the unseen photos " + ", ".join(f"-{100 * d:.0f}%" for d in drops),
                   train_seconds=trained, seconds_per_image=per_image, style_drops=drops)
