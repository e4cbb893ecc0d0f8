"""Tour section: images optimized for classes and channels, the three class recipes side by side,
and the feature-inversion ladder."""

from __future__ import annotations

import torch

from convscope.core.layers import conv_layers
from convscope.core.render import Picture, grid, picture
from convscope.optimize.invert import inversion_ladder
from convscope.optimize.visualize import visualize_channel, visualize_class
from convscope.samples import sample_image
from convscope.tour.runner import Shot, TourContext

SECTION = "Optimizing the image"
CLASSES = ("goldfish", "flamingo", "espresso", "monarch")
CHANNEL_LAYERS = ("_blocks.3", "_blocks.10", "_conv_head")
LADDER_LAYERS = ("_blocks.1", "_blocks.4", "_blocks.8", "_blocks.11", "_blocks.15")


def optimize_shots(context: TourContext) -> list[Shot]:
    model, full = context.model, context.full
    steps = 512 if full else 128
    classes = _classes(model)
    shots = [Shot(SECTION, "Classes (Fourier, decorrelated color)",
                  lambda: visualize_class(model, classes, steps=steps).picture([str(c) for c in classes]))]
    shots.append(Shot(SECTION, "One class, three recipes", lambda: _recipes(model, classes[0], steps)))
    size = min(128, *model.input_size)
    for layer in _layers(model, CHANNEL_LAYERS):
        shots.append(Shot(SECTION, f"Channels of {layer}", lambda layer=layer: visualize_channel(
            model, layer, [0, 1, 2, 3], steps=steps, size=size).picture()))
    cat = sample_image("cat", size=model.input_size)
    shots.append(Shot(SECTION, "Feature inversion from shallow to deep (cat)", lambda: inversion_ladder(
        model, cat, _layers(model, LADDER_LAYERS), steps=300 if full else 150).picture()))
    return shots


def _classes(model) -> list:
    """The tour's classes when the model knows them, else its first four."""
    known = {name for names in model.labels.synonyms for name in names} if model.labels else set()
    if all(name in known for name in CLASSES):
        return list(CLASSES)
    return [0, 1, 2, 3]


def _layers(model, preferred: tuple[str, ...]) -> list[str]:
    """The preferred layers when the model has them all, else as many conv layers evenly spread."""
    names = dict(model.net.named_modules())
    if all(layer in names for layer in preferred):
        return list(preferred)
    convs = conv_layers(model.net)
    count = min(len(preferred), len(convs))
    return [convs[round(i * (len(convs) - 1) / max(count - 1, 1))] for i in range(count)]


def _recipes(model, name: str | int, steps: int) -> Picture:
    results = {recipe: visualize_class(model, [name], recipe=recipe, steps=steps if recipe == "fourier" else 100)
               for recipe in ("simonyan", "yosinski", "fourier")}
    images = [result.images for result in results.values()]
    return picture(grid(torch.cat(images), columns=3, padding=4),
                   f"{name}: " + " | ".join(f"{recipe} (logit {float(r.scores[-1, 0]):.0f})"
                                            for recipe, r in results.items()),
                   recipes=list(results))
