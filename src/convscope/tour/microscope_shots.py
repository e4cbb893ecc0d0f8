"""Tour section: the microscope's methods (MACO, channel views, interaction, caricature,
building blocks) and a small microscope site written beside the gallery."""

from __future__ import annotations

import torch

from convscope.core.images import fit, load_image
from convscope.core.objectives import channel, class_logit
from convscope.core.render import Picture, grid, picture
from convscope.core.summary import list_layers
from convscope.inspect.blocks import building_blocks
from convscope.microscope import build_microscope
from convscope.microscope.units import UnitSettings, unit_folder
from convscope.optimize.caricature import caricature
from convscope.optimize.interaction import interpolate
from convscope.optimize.maco import importance, with_importance
from convscope.optimize.visualize import channel_views, visualize_class
from convscope.samples import sample_image
from convscope.tour.optimize_shots import _classes, _layers
from convscope.tour.runner import Shot, TourContext

SECTION = "A microscope for your model"
UNIT_LAYER, DEEP_LAYER, CARICATURE_LAYER = "_blocks.2", "_blocks.10", "_blocks.8"
SITE_UNIT = 5


def microscope_shots(context: TourContext) -> list[Shot]:
    model, full = context.model, context.full
    steps = 256 if full else 96
    deep, shallow, middle = _layers(model, (DEEP_LAYER, UNIT_LAYER, CARICATURE_LAYER))
    size = min(128, *model.input_size)
    count = {info.name: info.shape for info in list_layers(model)}[deep][0]
    first, second = min(7, count // 2), min(20, count - 1)  # channels 7 and 20, or a small layer's own
    return [
        Shot(SECTION, "MACO: phases only, a photo's spectrum (goldfish)",
             lambda: _maco(model, _classes(model)[0], steps)),
        Shot(SECTION, f"Positive, negative and diverse ({deep} channel {first})", lambda: channel_views(
            model, deep, [first], diverse=3, size=size, steps=steps, diversity_weight=3.0).picture()),
        Shot(SECTION, f"Neuron interaction ({deep} channels {first} to {second})",
             lambda: _interaction(model, deep, (first, second), size, steps)),
        Shot(SECTION, f"Caricature of the coffee photo ({middle})", lambda: _caricature(model, middle, steps)),
        Shot(SECTION, f"Building blocks (cat, {deep})", lambda: building_blocks(
            model, sample_image("cat", size=model.input_size), deep, groups=5, render_steps=steps,
            size=size).picture()),
        Shot(SECTION, f"A microscope unit page ({shallow} unit {SITE_UNIT})",
             lambda: _site(model, shallow, context, 128 if full else 48), link="microscope/index.html"),
    ]


def _maco(model, name, steps: int) -> Picture:
    result = visualize_class(model, name, recipe="maco", steps=steps)
    index = model.labels.index(name) if model.labels else int(name)
    weights = importance(model, class_logit(index), result.images)
    return with_importance(result.images, weights, f"{name}, MACO | faded where the class logit's gradient is weak "
                                                   f"(its importance map)")


def _interaction(model, layer: str, pair: tuple[int, int], size: int, steps: int) -> Picture:
    result = interpolate(model, channel(layer, pair[0]), channel(layer, pair[1]), count=5, size=size, steps=steps)
    return picture(grid(result.images, columns=5, padding=4), f"{layer}: channel {pair[0]}, three mixes, channel "
                                                              f"{pair[1]} (one shared parametrization)")


def _caricature(model, layer: str, steps: int) -> Picture:
    photo = sample_image("coffee", size=160)
    result = caricature(model, photo, layer, steps=steps)
    return picture(grid(torch.cat([photo, result.images]), columns=2, padding=4),
                   f"the photo | what {layer} sees in it, exaggerated")


def _site(model, layer: str, context: TourContext, steps: int) -> Picture:
    """Writes a microscope site of one layer into the tour's folder and shows one unit's pictures."""
    site = context.folder / "microscope"
    build_microscope(model, [layer], site, dataset="photos:32", k=4,
                     settings=UnitSettings(size=64, steps=steps, diverse=2, chunk=32), progress=False)
    folder = unit_folder(site, layer, SITE_UNIT)
    names = ("positive", "negative", "diverse-1", "diverse-2", "dream", "top", "bottom")
    tiles = [fit(load_image(folder / f"{name}.png"), 128)[0] for name in names]
    return picture(grid(torch.stack(tiles), columns=len(tiles), padding=4),
                   f"{layer} unit {SITE_UNIT}: " + " | ".join(names) + "; every unit has its page in the site")
