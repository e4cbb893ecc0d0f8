"""The tour's sections: each returns the shots that show one area of convscope."""

from __future__ import annotations

from convscope.tour.adversarial_shots import adversarial_shots
from convscope.tour.art_shots import art_shots
from convscope.tour.attribute_shots import attribute_shots
from convscope.tour.dataset_shots import dataset_shots
from convscope.tour.inspect_shots import inspect_shots
from convscope.tour.microscope_shots import microscope_shots
from convscope.tour.optimize_shots import optimize_shots
from convscope.tour.runner import Shot, TourContext
from convscope.tour.task_shots import task_shots
from convscope.tour.trust_shots import trust_shots

SECTIONS = [inspect_shots, dataset_shots, attribute_shots, trust_shots, task_shots, optimize_shots, microscope_shots,
            art_shots, adversarial_shots]


def all_shots(context: TourContext) -> list[Shot]:
    """Every shot of every section, in gallery order."""
    return [shot for section in SECTIONS for shot in section(context)]
