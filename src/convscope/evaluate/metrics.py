"""The metrics by name: what each measures, which direction is better, and how it is computed from
one method's maps (or from the method itself, for the metrics that explain changed inputs or
models)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from convscope.evaluate.complexity import sparseness
from convscope.evaluate.curves import Curve, deletion, insertion
from convscope.evaluate.randomization import Explainer, cascading_randomization, random_logit
from convscope.evaluate.road import road
from convscope.evaluate.pointing import energy_pointing_game, pointing_game
from convscope.evaluate.robustness import infidelity, max_sensitivity
from convscope.evaluate.scores import Target
from convscope.models.model import Model


@dataclass
class Case:
    """One method's maps of a batch, and what a metric may need to recompute them.

    Attributes:
        model: the model explained.
        x: ``(B, C, H, W)`` images in [0, 1].
        target: ``(B,)`` the explained class of each image, or a task's objective.
        maps: ``(B, H, W)`` the method's maps (importance, larger is more important).
        explain: the method, to explain changed inputs, classes or models.
        copies: randomized copies of the model, shared by the methods evaluated together.
        truth: ``(B, H, W)`` where each image's object is (nonzero), for the pointing games; or None.
    """

    model: Model
    x: torch.Tensor
    target: Target
    maps: torch.Tensor
    explain: Explainer
    copies: dict = field(default_factory=dict)
    truth: torch.Tensor | None = None


@dataclass(frozen=True)
class Metric:
    """A metric of attribution maps.

    Attributes:
        name: its name on the command line.
        better: ``"higher"`` or ``"lower"``.
        measures: one sentence a user reads beside the number.
        compute: ``(Case, **options) -> ((B,) values, Curve or None)``; the options are the keyword
            arguments of the function behind the metric (``steps`` of deletion, ``fractions`` of ROAD ...).
        needs_truth: it compares the map with where the object is (:attr:`Case.truth`).
    """

    name: str
    better: str
    measures: str
    compute: Callable[..., tuple[torch.Tensor, Curve | None]]
    needs_truth: bool = False


def _curve_metric(make: Callable[..., Curve]) -> Callable[..., tuple[torch.Tensor, Curve]]:
    def compute(case: Case, **options) -> tuple[torch.Tensor, Curve]:
        curve = make(case, **options)
        return curve.auc, curve
    return compute


def _mprt(case: Case, **options) -> tuple[torch.Tensor, Curve]:
    similarities, _ = cascading_randomization(case.model, case.x, case.target, case.explain, copies=case.copies,
                                              **options)
    steps = similarities.shape[1]
    return similarities.mean(1), Curve(torch.arange(1, steps + 1) / steps, similarities)


METRICS: dict[str, Metric] = {metric.name: metric for metric in [
    Metric("deletion", "lower", "the explained score (a class's probability) as the most important pixels are "
           "blacked out, averaged over the deletion (Petsiuk et al. 2018); black speckle alone lowers it, so a map of scattered "
           "pixels can win without finding anything: read it with ROAD",
           _curve_metric(lambda c, **o: deletion(c.model, c.x, c.maps, c.target, **o))),
    Metric("insertion", "higher", "the explained score as the most important pixels are put back into a blurred "
           "copy, averaged over the insertion",
           _curve_metric(lambda c, **o: insertion(c.model, c.x, c.maps, c.target, **o))),
    Metric("road-morf", "lower", "the explained score with the most relevant pixels removed and filled in from "
           "their neighbours, so that the removal's shape tells nothing (ROAD, Rong et al. 2022)",
           _curve_metric(lambda c, **o: road(c.model, c.x, c.maps, c.target, most_relevant_first=True, **o))),
    Metric("road-lerf", "higher", "the explained score with the least relevant pixels removed and filled in "
           "from their neighbours (ROAD)",
           _curve_metric(lambda c, **o: road(c.model, c.x, c.maps, c.target, most_relevant_first=False, **o))),
    Metric("mprt", "lower", "rank correlation with the map of the same model with its layers randomized top "
           "down: a map that stays the same does not depend on what was learned (Adebayo et al. 2018)", _mprt),
    Metric("random-logit", "lower", "rank correlation with the map of a random other class: a map that stays "
           "the same does not explain the class (Sixt et al. 2020)",
           lambda c, **o: (random_logit(c.model, c.x, c.target, c.explain, classes_count=_classes(c), **o), None)),
    Metric("max-sensitivity", "lower", "largest relative change of the map when the pixels move by 2% "
           "(Yeh et al. 2019)", lambda c, **o: (max_sensitivity(c.model, c.x, c.target, c.explain, **o), None)),
    Metric("infidelity", "lower", "how badly the map, at its best scale, predicts the logit's change under "
           "random noise (Yeh et al. 2019)", lambda c, **o: (infidelity(c.model, c.x, c.maps, c.target, **o), None)),
    Metric("pointing-game", "higher", "share of images whose map peaks on the object, within 15 pixels, as "
           "the ground truth gives it (Zhang et al. 2016)",
           lambda c, **o: (pointing_game(c.maps, c.truth, **o), None), needs_truth=True),
    Metric("energy-pointing-game", "higher", "share of the map's positive mass on the object, as the ground "
           "truth gives it (Wang et al. 2020)", lambda c, **o: (energy_pointing_game(c.maps, c.truth), None),
           needs_truth=True),
    Metric("sparseness", "higher", "Gini index of the map: how few pixels hold the attribution "
           "(Chalasani et al. 2020)", lambda c, **o: (sparseness(c.maps), None)),
]}


def _classes(case: Case) -> int:
    with torch.no_grad():
        return int(case.model.run_accepted(case.model, case.x[:1].to(case.model.device)).shape[-1])
