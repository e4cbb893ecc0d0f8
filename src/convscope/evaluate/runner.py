"""Methods x metrics over a batch of images: every method's maps once, every metric on them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from convscope.attribute.saliency import METHODS, saliency
from convscope.attribute.targets import class_indices, objective_for, task_of
from convscope.core.objectives import Objective
from convscope.errors import ConvscopeError, unknown_choice
from convscope.evaluate.metrics import METRICS, Case
from convscope.evaluate.randomization import Explainer
from convscope.evaluate.report import Report
from convscope.evaluate.scores import Target
from convscope.models.model import Model, as_model

DEFAULT_METHODS = ("gradient", "gradcam", "integrated-gradients")
DEFAULT_METRICS = ("deletion", "insertion")


def method_explainer(method: str) -> Explainer:
    """The explainer of a :data:`~convscope.attribute.saliency.METHODS` name: ``(B, H, W)`` maps."""
    if method not in METHODS:
        raise unknown_choice("method", method, METHODS)
    return lambda model, x, target: saliency(model, x, target, method=method).map


def explained(model: Model, x: torch.Tensor, target: int | str | torch.Tensor | Objective | None
              ) -> tuple[Target, list[str]]:
    """What the metrics score for ``x``, and a label per image: a classifier's classes ``(B,)`` (the
    top class of each image when ``target`` is None), or the task's objective
    (:func:`~convscope.attribute.targets.objective_for`; a box keeps D-RISE's similarity for the
    perturbations) fixed on the unchanged model, so that randomized copies explain the same thing."""
    task = task_of(model, x)
    grammar = isinstance(target, str) and (":" in target or target in ("up", "down"))
    if isinstance(target, Objective) or grammar or task not in ("classification", "multi-label"):
        objective = objective_for(model, x, target)
        return objective, [objective.name] * len(x)
    classes = class_indices(model, x, target).cpu()
    return classes, [model.label(int(c)) for c in classes]


def evaluate(model: Model | nn.Module, x: torch.Tensor, methods: Sequence[str] | dict[str, Explainer] = DEFAULT_METHODS,
             metrics: Sequence[str] = DEFAULT_METRICS, target: int | str | torch.Tensor | Objective | None = None,
             *, truth: torch.Tensor | None = None, options: dict[str, dict] | None = None, progress: bool = False,
             on_step: Callable[[int, int], None] | None = None) -> Report:
    """Evaluates each method's maps of ``x`` with each metric.

    Args:
        x: ``(B, C, H, W)`` images in [0, 1].
        methods: names of :data:`~convscope.attribute.saliency.METHODS`, or ``{name: explainer}``
            with explainers ``(model, x, target) -> (B, H, W)`` (a baseline of your own, e.g. an
            edge detector; ``target`` is :func:`explained`'s).
        metrics: names of :data:`~convscope.evaluate.metrics.METRICS`.
        target: the class to explain (default: each image's top class), a ``--target`` string
            (:data:`~convscope.attribute.targets.GRAMMAR`: a region, a box ...) or an Objective of
            the output; a model of another task explains its prediction by default.
        truth: ``(B, H, W)`` where each image's object is (nonzero), for the pointing games
            (:func:`~convscope.evaluate.pointing.box_masks` makes it from boxes).
        options: metric -> keyword arguments of its function, e.g. ``{"deletion": {"steps": 50}}``.
        on_step: called with ``(done, total)`` after each method x metric.

    Returns:
        :class:`~convscope.evaluate.report.Report`.
    """
    explainers = methods if isinstance(methods, dict) else {name: method_explainer(name) for name in methods}
    for name in metrics:
        if name not in METRICS:
            raise unknown_choice("metric", name, METRICS)
    if not explainers or not metrics:
        raise ConvscopeError("give at least one method and one metric")
    wanting = [name for name in metrics if METRICS[name].needs_truth]
    if wanting and truth is None:
        raise ConvscopeError(f"{', '.join(wanting)} need where the object is: evaluate(..., truth=(B, H, W) masks), "
                             "or --truth MASK.png or --truth X1,Y1,X2,Y2 on the command line")
    model = as_model(model)
    x = x.to(model.device)
    chosen, labels = explained(model, x, target)
    classes = None if isinstance(chosen, Objective) else chosen
    report = Report(model.name, x.detach().cpu(), classes, labels, list(metrics),
                    score="class probability" if classes is not None else (chosen.perturbed or chosen).name)
    total, copies = len(explainers) * (len(metrics) + 1), {}  # randomized copies, shared by the methods
    with tqdm(total=total, desc="evaluate", disable=not progress) as bar:
        for name, explain in explainers.items():
            maps = explain(model, x, chosen).detach().cpu().float()
            report.maps[name] = maps
            _advance(bar, on_step, total)
            for metric in metrics:
                values, curve = METRICS[metric].compute(Case(model, x, chosen, maps, explain, copies, truth),
                                                        **(options or {}).get(metric, {}))
                report.add(metric, name, values, curve)
                _advance(bar, on_step, total)
    return report


def _advance(bar: tqdm, on_step: Callable[[int, int], None] | None, total: int) -> None:
    bar.update(1)
    if on_step is not None:
        on_step(bar.n, total)
