"""Tour section: beyond classification — the shapes detector and segmenter (heads on the default
model's trunk) explained on scenes whose answer is known, and the maps scored against it."""

from __future__ import annotations

from functools import cache

import torch

from convscope.attribute.rise import rise
from convscope.attribute.saliency import Saliency, saliency
from convscope.attribute.targets import objective_for
from convscope.core.boxes import iou
from convscope.core.render import Picture, outlined, picture, side_by_side
from convscope.data.scenes import Scene, scene
from convscope.evaluate.runner import evaluate
from convscope.inspect.detections import detect, detections_picture
from convscope.models import Model, load_model
from convscope.tour.runner import Shot, TourContext

SECTION = "Beyond classification"
#: Scenes the shapes models never saw in training (those are seeds 0..1999 and 100000..100199).
SEEDS = tuple(range(200_000, 200_004))
#: D-RISE masks in the tour (its default is 2000).
MASKS = 500
METHODS = ("gradient", "gradcam", "rise")


def task_shots(context: TourContext) -> list[Shot]:
    """The section runs on the default model's trunk, so it goes with the default model's tour."""
    if context.model.name != "efficientnet_lite0":
        return []

    @cache
    def models() -> tuple[Model, Model]:
        return (load_model("shapes_detector", device=context.model.device),
                load_model("shapes_segmenter", device=context.model.device))

    @cache
    def scenes() -> list[Scene]:
        return [scene(seed) for seed in SEEDS]
    first = lambda: scenes()[0].image  # noqa: E731
    return [
        Shot(SECTION, "What the shapes detector finds", lambda: _detections(models()[0], scenes()[0])),
        *[Shot(SECTION, f"Box 0 explained: {method}",
               lambda method=method: _explained(models()[0], first(), "box:0", method).picture())
          for method in METHODS],
        Shot(SECTION, "A region of the segmenter explained: Grad-CAM",
             lambda: saliency(models()[1], first(), method="gradcam").picture()),
        Shot(SECTION, "Pointing game against the true shapes", lambda: _pointing(models()[0], scenes())),
    ]


def _explained(model: Model, x: torch.Tensor, target, method: str) -> Saliency:
    """``method``'s map of ``target``; RISE (here D-RISE) with the tour's :data:`MASKS`."""
    if method != "rise":
        return saliency(model, x, target, method=method)
    objective = objective_for(model, x, target, perturbation=True)
    return Saliency(f"rise, {MASKS} masks", rise(model, x, objective, masks=MASKS), x.cpu(), objective)


def _detections(model: Model, known: Scene) -> Picture:
    """The true shapes outlined, beside the detector's boxes."""
    found = detections_picture(model, known.image)
    truth = known.image[0]
    for mask in known.masks:
        truth = outlined(truth, mask, width=2)
    names = ", ".join(model.label(int(c)) for c in known.classes)
    return picture(side_by_side([truth, torch.from_numpy(found.array).permute(2, 0, 1).float() / 255]),
                   f"left: the true shapes outlined ({names}); right: {found.caption}", **found.numbers)


def _pointing(model: Model, known: list[Scene]) -> Picture:
    """Gradient, Grad-CAM and D-RISE of each scene's box 0, scored by the pointing games against the
    true shape that box found (its mask)."""
    x = torch.cat([s.image for s in known])
    boxes = [found[0] for found in detect(model, x)]
    truth = torch.stack([s.masks[int(iou(torch.tensor(b.box).view(1, 4), s.boxes).argmax())]
                         for s, b in zip(known, boxes)])
    report = evaluate(model, x, {method: lambda m, images, target, method=method: _explained(
                          m, images, target, method).map for method in METHODS},
                      ["pointing-game", "energy-pointing-game", "deletion"], "box:0", truth=truth,
                      options={"deletion": {"steps": 25}})
    return report.table_picture()
