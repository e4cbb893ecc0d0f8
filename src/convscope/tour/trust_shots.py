"""Tour section: which attribution map to trust — methods ranked by every metric on the bundled photos."""

from __future__ import annotations

from functools import cache

import torch

from convscope.evaluate.metrics import METRICS
from convscope.evaluate.report import Report
from convscope.evaluate.runner import evaluate
from convscope.samples import sample_image
from convscope.tour.runner import Shot, TourContext

SECTION = "Which map to trust"
PHOTOS = ("cat", "coffee")
#: Methods whose maps take a fraction of a second (the robustness and randomization metrics explain
#: each image up to a dozen more times); Integrated Gradients and SmoothGrad are ranked by
#: ``convscope evaluate`` when asked.
METHODS = ("gradient", "input-x-gradient", "guided", "gradcam", "gradcam++", "layercam", "eigencam", "lrp")
#: Coarser than the defaults, to keep the tour short: the rankings these give on the two photos are
#: the defaults' (checked once; the defaults are what ``convscope evaluate`` uses).
OPTIONS = {"deletion": {"steps": 25}, "insertion": {"steps": 25}, "road-morf": {"fractions": (0.1, 0.3, 0.5, 0.7, 0.9)},
           "road-lerf": {"fractions": (0.1, 0.3, 0.5, 0.7, 0.9)}, "mprt": {"blocks": 3},
           "max-sensitivity": {"samples": 5}}


def trust_shots(context: TourContext) -> list[Shot]:
    model = context.model
    methods = METHODS if context.model.channels == 3 else tuple(m for m in METHODS if m != "lrp")

    @cache
    def report() -> Report:
        x = torch.cat([sample_image(name, size=model.input_size) for name in PHOTOS])
        metrics = [name for name, metric in METRICS.items() if not metric.needs_truth]
        return evaluate(model, x, methods, metrics, options=OPTIONS)
    return [Shot(SECTION, "Every method ranked by every metric", lambda: report().table_picture()),
            Shot(SECTION, "Deletion, insertion, ROAD and randomization curves", lambda: report().curves_picture()),
            Shot(SECTION, "The maps that were ranked", lambda: report().maps_picture())]
