"""Turning what the user asks about into an Objective, for the model's task.

A target is an :class:`~convscope.core.objectives.Objective`, a channel or unit of a layer, or
what the command line's ``--target`` says (:data:`GRAMMAR`). Left out, it is what the model
predicts: a classifier's top class; a segmenter's largest predicted class (other than class 0,
the background, where any other is predicted) over the pixels it predicts; a regression's output;
a detector's best box (box 0). An embedding model has no prediction to explain: it needs a
reference. A box is explained by its score for gradient methods and by D-RISE's similarity for
perturbation methods, unless a part is named.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from convscope.core.hooks import frozen
from convscope.core.images import load_image
from convscope.core.objectives import Objective, channel, class_logit, neuron
from convscope.core.render import outlined, side_by_side
from convscope.core.task_objectives import (BOX_PARTS, box, box_similarity, class_sigmoid, contrast, output_value,
                                            region, similarity)
from convscope.errors import ConvscopeError, shorten
from convscope.inspect.detections import THRESHOLD, box_picture, detect
from convscope.inspect.predictions import NOT_A_CLASSIFIER, article, probabilities
from convscope.models.model import Model

#: The ``--target`` grammar, one line per form.
GRAMMAR = ("CLASS (name or index; the top class when left out) | sigmoid:CLASS (multi-label) | up, down, "
           "up:INDEX (a regression's output) | region:CLASS[~OTHER][@MASK.png] (segmentation: the "
           "predicted pixels of CLASS, or the mask's; ~OTHER: CLASS rather than OTHER) | box:K[:PART] (a "
           f"detector's box K, best first; PART: {', '.join(BOX_PARTS)} or drise) | similar:IMAGE, "
           "different:IMAGE (an embedding)")
_TASKS: weakref.WeakKeyDictionary[nn.Module, dict[str, str]] = weakref.WeakKeyDictionary()


def task_of(model: Model, x: torch.Tensor) -> str:
    """The model's task: as set, else inferred from its output for ``x`` (once per network)."""
    if model.task is not None:
        return model.task
    known = _TASKS.setdefault(model.net, {})
    key = repr(model.output)
    if key not in known:
        with frozen(model.net), torch.no_grad():
            known[key] = model.task_of(model(x[:1].to(model.device)))
    return known[key]


def class_indices(model: Model, x: torch.Tensor, target: int | str | torch.Tensor | None) -> torch.Tensor:
    """``(B,)`` class indices: the top class of each image when ``target`` is None, else the named one.

    Raises:
        ConvscopeError: an unknown class name (close names are suggested) or index; a model that is
            not a classifier, when asked for its top class.
    """
    if target is None:
        return probabilities(model, x).argmax(-1)
    if isinstance(target, torch.Tensor):
        return target.long().expand(len(x))
    return torch.full((len(x),), class_index(model, target), dtype=torch.long)


def class_index(model: Model, name: int | str) -> int:
    """The index of a class given by name or index."""
    if model.labels is not None:
        return model.labels.index(name)
    if str(name).isdigit():
        return int(name)
    raise ConvscopeError(f"the model has no class names; give the class as an index, not {shorten(str(name))!r}")


def objective_for(model: Model, x: torch.Tensor, target: int | str | torch.Tensor | Objective | None = None, *,
                  layer: str | None = None, channel_index: int | None = None,
                  position: tuple[int, int] | None = None, perturbation: bool = False) -> Objective:
    """What to explain for ``x`` ``(B, C, H, W)``: an Objective as given, a unit or channel of
    ``layer``, a ``--target`` string (:data:`GRAMMAR`), or the model's prediction for its task.
    ``perturbation``: the method perturbs the image (a box is then read by D-RISE's similarity, an
    objective by its :attr:`~convscope.core.objectives.Objective.perturbed` form)."""
    if isinstance(target, Objective):
        return target.perturbed if perturbation and target.perturbed is not None else target
    if channel_index is not None:
        if layer is None:
            raise ConvscopeError("a channel needs its layer: give --layer too")
        if position is not None:
            return neuron(layer, channel_index, *position)
        return channel(layer, channel_index)
    if isinstance(target, str) and (":" in target or target in ("up", "down")):
        return _parsed(model, x, target, perturbation)
    task = task_of(model, x)
    if task == "detection":
        if target is not None and not str(target).isdigit():
            raise ConvscopeError(f"{model.name} is a detector: explain one of its boxes, box:K[:PART] (K: 0 is the "
                                 f"best), not {shorten(str(target))!r}")
        chosen = box_target(model, x, 0 if target is None else target)
        return chosen.perturbed if perturbation else chosen
    if task == "segmentation":
        return predicted_region(model, x, target)
    if task == "regression" and target is None:
        return output_value(0)
    if task in ("regression", "embedding"):
        raise ConvscopeError(f"{model.name} is {article(task)} {task} model: {NOT_A_CLASSIFIER[task]}")
    indices = class_indices(model, x, target)
    objective = class_logit(indices)
    if bool((indices == indices[0]).all()):
        objective.name = f"{model.label(int(indices[0]))} ({int(indices[0])})"
    return objective


def predicted_region(model: Model, x: torch.Tensor, target: int | str | torch.Tensor | None = None, *,
                     mask: torch.Tensor | None = None, rather_than: int | str | None = None) -> Objective:
    """The mean logit of a class over a region of each image: the pixels the model predicts as that
    class (``mask`` None) or ``mask`` ``(H, W)``; the class is ``target``, or the largest predicted
    one. ``rather_than``: that class's mean logit over the same region is subtracted.

    Raises:
        ConvscopeError: the class has no predicted pixels in an image (give a mask).
    """
    indices, regions = _region(model, x, target, mask)
    chosen = region(indices if len(set(indices.tolist())) > 1 else int(indices[0]), regions)
    where = "the mask" if mask is not None else "its predicted pixels"
    chosen.name = f"{_class_name(model, int(indices[0]))} over {where} (outlined)"
    if rather_than is not None:
        other = class_index(model, rather_than)
        rival = region(other, regions)
        rival.name = _class_name(model, other)
        chosen = contrast(chosen, rival)
    chosen.marks = lambda image, i: outlined(image, regions[i] if regions.dim() == 3 else regions)
    return chosen


def _region(model: Model, x: torch.Tensor, target: int | str | torch.Tensor | None,
            mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B,)`` classes and ``(B, h, w)`` regions (or the given ``(H, W)`` mask)."""
    with frozen(model.net), torch.no_grad():
        output = model(x.to(model.device))
    if output.dim() != 4:
        raise ConvscopeError(f"a region target needs a segmentation output (B, classes, h, w); {model.name} "
                             f"returns shape {tuple(output.shape)}")
    predicted = output.argmax(1).cpu()
    if target is None:
        areas = torch.nn.functional.one_hot(predicted.flatten(1), output.shape[1]).sum(1)  # (B, classes)
        if output.shape[1] > 1:
            areas[:, 0] = torch.where(areas[:, 1:].sum(1) > 0, -1, areas[:, 0])  # class 0: the background
        indices = areas.argmax(1)
    else:
        indices = class_indices(model, x, target)
        if int(indices.max()) >= output.shape[1]:
            raise ConvscopeError(f"class {int(indices.max())} is out of range; the model segments "
                                 f"{output.shape[1]} classes")
    if mask is not None:
        if tuple(mask.shape[-2:]) not in (tuple(x.shape[-2:]), tuple(output.shape[-2:])):
            raise ConvscopeError(f"the mask is {mask.shape[-2]}x{mask.shape[-1]}; accepted: the image's size "
                                 f"{x.shape[-2]}x{x.shape[-1]} or the output's {output.shape[-2]}x{output.shape[-1]}")
        return indices, mask.to(torch.float32)
    regions = predicted == indices.view(-1, 1, 1)
    empty = [i for i, r in enumerate(regions) if not r.any()]
    if empty:
        raise ConvscopeError(f"class {model.label(int(indices[empty[0]]))} has no predicted pixels in image "
                             f"{empty[0]}; give the region as a mask (region:CLASS@MASK.png)")
    return indices, regions


def box_target(model: Model, x: torch.Tensor, index: int | str, part: str | None = None) -> Objective:
    """Box ``index`` (best first, as :func:`~convscope.inspect.detections.detect` numbers them) of each
    image: its ``part`` (:data:`~convscope.core.task_objectives.BOX_PARTS`), or ``"drise"``, D-RISE's
    similarity to it; None: its score, with the similarity as its
    :attr:`~convscope.core.objectives.Objective.perturbed` form.

    Raises:
        ConvscopeError: an image has no such box, or ``part`` is unknown.
    """
    if not str(index).isdigit():
        raise ConvscopeError(f"box:K needs a box number, not {shorten(str(index))!r}")
    if part not in (*BOX_PARTS, "drise", None):
        raise ConvscopeError(f"unknown box part {shorten(part)!r}; accepted: {', '.join(BOX_PARTS)}, drise")
    k, chosen, every = int(index), [], detect(model, x)
    for i, found in enumerate(every):
        if k >= len(found):
            raise ConvscopeError(f"image {i} has {len(found)} boxes above score {THRESHOLD} (box:0 to box:"
                                 f"{len(found) - 1}), not a box {k}" if found else
                                 f"image {i} has no box above score {THRESHOLD}; nothing to explain")
        chosen.append(found[k])
    boxes = torch.tensor([d.box for d in chosen])
    classes = torch.tensor([d.index for d in chosen])

    def made(part: str) -> Objective:
        objective = box_similarity(boxes, classes) if part == "drise" else box(boxes, classes, part)
        what = "D-RISE similarity to" if part == "drise" else f"{part} of"
        objective.name = f"{what} box {k} " + (f"({chosen[0].label} {chosen[0].score:.2f})" if len(chosen) == 1
                                               else "of each image")
        objective.marks = lambda image, i: box_picture(image, every[i], chosen=k)
        return objective
    if part is not None:
        return made(part)
    score = made("score")
    score.perturbed = made("drise")
    return score


def _parsed(model: Model, x: torch.Tensor, target: str, perturbation: bool) -> Objective:
    kind, _, rest = target.partition(":")
    if kind == "box":
        index, _, part = rest.partition(":")
        chosen = box_target(model, x, index, part or None)
        return chosen.perturbed if perturbation and chosen.perturbed is not None else chosen
    if kind in ("up", "down"):
        if rest and not rest.isdigit():
            raise ConvscopeError(f"{kind}:INDEX needs a number, not {shorten(rest)!r}")
        value = output_value(int(rest or 0))
        return value if kind == "up" else -value
    if kind == "sigmoid":
        return class_sigmoid(class_index(model, rest))
    if kind == "region":
        classes, _, mask_file = rest.partition("@")
        first, _, other = classes.partition("~")
        mask = None if not mask_file else (load_image(mask_file).mean(1)[0] > 0.5).float()
        if mask is not None and not mask.any():
            raise ConvscopeError(f"the mask {shorten(mask_file)} has no pixel above one half")
        return predicted_region(model, x, first or None, mask=mask, rather_than=other or None)
    if kind in ("similar", "different"):
        picture = load_image(rest)
        with frozen(model.net), torch.no_grad():
            reference = model(model.prepare(picture))
        alike = similarity(reference) if kind == "similar" else -similarity(reference)
        alike.name = f"{'similarity' if kind == 'similar' else 'difference'} to {shorten(rest)} (shown beside)"
        alike.marks = lambda image, i: side_by_side([image, model.to_channels(picture)[0].expand(3, -1, -1).cpu()])
        return alike
    raise ConvscopeError(f"unknown target {shorten(target)!r}; accepted: {GRAMMAR}")


def _class_name(model: Model, index: int) -> str:
    return model.label(index) if model.labels is not None else f"class {index}"
