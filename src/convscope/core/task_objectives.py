"""Objectives for tasks other than single-label classification, read from the model's output.

* multi-label: :func:`class_sigmoid`, a class's own probability;
* regression: :func:`output_value`, one output value (negate it to explain "down");
* segmentation: :func:`region`, a class's mean logit over a mask (the predicted pixels of that
  class, a mask the user gives, or any other), and its contrastive form (:func:`contrast`);
* detection: :func:`box`, one box's score (or its class, objectness or an edge) at the candidate
  that matches it best, and :func:`box_similarity`, D-RISE's similarity of the candidates to it;
* embedding: :func:`similarity`, the cosine similarity to reference vectors (negate it for
  "different from").

Like the class objectives they take one target per image or one for all, and serve batches of
perturbed copies made image-major (``k`` copies of each image in turn) with each image's target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convscope.core.boxes import iou
from convscope.core.objectives import OUTPUT, Objective, _check_range, _pick, _selector, _show
from convscope.errors import ConvscopeError


def class_sigmoid(index: int | torch.Tensor) -> Objective:
    """A class's sigmoid probability (multi-label): ``index`` one class, or ``(B,)`` one per image."""
    return Objective(lambda acts: _pick(acts[OUTPUT].sigmoid(), index), (OUTPUT,), f"sigmoid[{_show(index)}]",
                     _selector(class_sigmoid, index))


def output_value(index: int = 0) -> Objective:
    """Output value ``index`` of each image (a regression's prediction), the output flattened per image."""
    def score(acts):
        values = acts[OUTPUT].flatten(1) if acts[OUTPUT].dim() > 1 else acts[OUTPUT].unsqueeze(1)
        _check_range("output index", index, values.shape[1])
        return values[:, index]
    return Objective(score, (OUTPUT,), f"output[{index}]")


def region(index: int | torch.Tensor, mask: torch.Tensor) -> Objective:
    """The mean logit of class ``index`` over ``mask`` of a ``(B, classes, h, w)`` segmentation.

    Args:
        index: the class, or ``(B,)`` one per image.
        mask: ``(H, W)`` or ``(B, H, W)`` weights in [0, 1] (bool is fine), at the output's size or
            any other (resized to it by area).
    """
    mask = mask.float()
    batched = mask.dim() == 3

    def score(acts):
        output = acts[OUTPUT]
        if output.dim() != 4:
            raise ConvscopeError(f"a region target needs a segmentation output (B, classes, h, w); this model "
                                 f"returns shape {tuple(output.shape)}")
        values = _pick(output.flatten(2), index) if not isinstance(index, torch.Tensor) else _planes(output, index)
        weights = _at(mask, output.shape[-2:]).to(values.device, values.dtype)
        weights = weights.view(-1, *output.shape[-2:]) if batched else weights.view(1, *output.shape[-2:])
        weights = _per_copy(weights, len(output))
        flat = values.reshape(len(output), -1)
        return (flat * weights.flatten(1)).sum(1) / weights.flatten(1).sum(1).clamp_min(1e-12)

    def one(i: int) -> Objective:
        return region(index.view(-1)[i:i + 1] if isinstance(index, torch.Tensor) and index.numel() > 1 else index,
                      mask[i] if batched else mask)
    per_image = batched or (isinstance(index, torch.Tensor) and index.numel() > 1)
    return Objective(score, (OUTPUT,), f"region of class {_show(index)}", one if per_image else None)


def contrast(first: Objective, second: Objective) -> Objective:
    """``first`` rather than ``second`` (for example class A rather than B over one region)."""
    combined = first - second
    combined.name = f"{first.name} rather than {second.name}"
    return combined


def similarity(reference: torch.Tensor) -> Objective:
    """Cosine similarity of each image's output vector (flattened) to ``reference``: ``(D,)`` one
    vector for all, ``(B, D)`` one per image, or ``(R, D)`` a set of ``R`` vectors (their mean
    similarity) when ``R`` is not the batch size."""
    reference = reference.detach().float()
    reference = reference.view(1, -1) if reference.dim() == 1 else reference.flatten(1)

    def score(acts):
        vectors = acts[OUTPUT].flatten(1)
        if vectors.shape[1] != reference.shape[1]:
            raise ConvscopeError(f"the reference has {reference.shape[1]} values, the model's output "
                                 f"{vectors.shape[1]} per image; give a reference from the same model")
        ref = reference.to(vectors.device, vectors.dtype)
        if len(ref) > 1 and len(vectors) % len(ref) == 0 and len(vectors) >= len(ref):
            return F.cosine_similarity(vectors, _per_copy(ref, len(vectors)), dim=1)
        return F.cosine_similarity(vectors.unsqueeze(1), ref.unsqueeze(0), dim=2).mean(1)
    return Objective(score, (OUTPUT,), "similarity to the reference",
                     (lambda i: similarity(reference[i])) if len(reference) > 1 else None)


#: What a box target reads at its candidate: the score ``objectness * class``, one factor, its overlap
#: with the box (its position), or one edge.
BOX_PARTS = ("score", "class", "objectness", "iou", "x1", "y1", "x2", "y2")


def box(reference: torch.Tensor, index: int | torch.Tensor, part: str = "score") -> Objective:
    """One box of a detector's packed candidates ``(B, N, 5 + K)`` (:mod:`convscope.models.detectors`).

    The candidate read is the one that overlaps ``reference`` most (chosen without gradient; at the
    image the box was found on, the box itself), so the target follows its object through
    perturbed and interpolated copies of the image.

    Args:
        reference: ``(4,)`` the box ``x1, y1, x2, y2``, or ``(B, 4)`` one per image.
        index: its class, or ``(B,)`` one per image.
        part: one of :data:`BOX_PARTS`. ``iou`` is for perturbations: at the detected box itself
            the overlap is at its maximum, a kink, and its gradient there is decided by rounding.
    """
    if part not in BOX_PARTS:
        raise ConvscopeError(f"unknown box part {part!r}; accepted: {', '.join(BOX_PARTS)}")
    references, classes = reference.detach().float().view(-1, 4), torch.as_tensor(index).view(-1)

    def score(acts):
        candidates, wanted, chosen = _candidates(acts, references, classes)
        rows = torch.arange(len(candidates), device=candidates.device)
        scores = candidates[..., 4] * candidates[..., 5:].gather(-1, wanted.view(-1, 1, 1).expand(
            -1, candidates.shape[1], 1))[..., 0]
        overlaps = iou(candidates[..., :4], chosen[:, None])
        match = (overlaps + 1e-3 * scores).detach().argmax(1)
        if part in ("score", "iou"):
            return (scores if part == "score" else overlaps)[rows, match]
        if part == "class":
            return candidates[rows, match, 5 + wanted]
        return candidates[rows, match, 4 if part == "objectness" else BOX_PARTS.index(part) - 4]
    return Objective(score, (OUTPUT,), f"box {part}", _per_box(box, references, classes, part))


def box_similarity(reference: torch.Tensor, index: int | torch.Tensor) -> Objective:
    """D-RISE's similarity (Petsiuk et al. 2021) of a detector's candidates to one box: the best over
    the candidates of IoU x the cosine of their class probabilities with the box's class (one-hot)
    x objectness. ``reference`` ``(4,)`` or ``(B, 4)``, ``index`` its class or ``(B,)``."""
    references, classes = reference.detach().float().view(-1, 4), torch.as_tensor(index).view(-1)

    def score(acts):
        candidates, wanted, chosen = _candidates(acts, references, classes)
        probabilities = candidates[..., 5:]
        cosine = probabilities.gather(-1, wanted.view(-1, 1, 1).expand(-1, candidates.shape[1], 1))[..., 0] \
            / probabilities.norm(dim=-1).clamp_min(1e-12)
        return (iou(candidates[..., :4], chosen[:, None]) * cosine * candidates[..., 4]).amax(1)
    return Objective(score, (OUTPUT,), "box similarity (D-RISE)",
                     _per_box(lambda r, i, _: box_similarity(r, i), references, classes, None))


def _candidates(acts, references: torch.Tensor, classes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The packed candidates, and each copy's class ``(N,)`` and reference box ``(N, 4)``."""
    candidates = acts[OUTPUT]
    if candidates.dim() != 3 or candidates.shape[-1] < 6:
        raise ConvscopeError(f"a box target needs a detector's candidates (B, boxes, 5 + classes); this model "
                             f"returns shape {tuple(candidates.shape)}")
    _check_range("class index", classes, candidates.shape[-1] - 5)
    wanted = _per_copy(classes.to(candidates.device), len(candidates))
    chosen = _per_copy(references.to(candidates.device, candidates.dtype), len(candidates))
    return candidates, wanted, chosen


def _per_box(make, references: torch.Tensor, classes: torch.Tensor, part):
    """The selector of a box objective with one box per image (None when one box serves all)."""
    if len(references) == 1 and len(classes) == 1:
        return None
    return lambda i: make(references[i if len(references) > 1 else 0], classes[i if len(classes) > 1 else 0], part)


def _planes(output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(N, h, w)``: class ``index[i]``'s plane of each image (copies image-major)."""
    index = _per_copy(index.to(output.device).view(-1), len(output))
    _check_range("class index", index, output.shape[1])
    return output[torch.arange(len(output), device=output.device), index]


def _per_copy(values: torch.Tensor, count: int) -> torch.Tensor:
    """``values`` (one row per image) repeated for ``count`` rows of copies made image-major."""
    if len(values) == count or len(values) == 1:
        return values.expand(count, *values.shape[1:]) if len(values) == 1 else values
    if count % len(values):
        raise ConvscopeError(f"{len(values)} targets for a batch of {count} images")
    return values.repeat_interleave(count // len(values), dim=0)


def _at(mask: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """``mask`` ``(H, W)`` or ``(B, H, W)`` at ``size`` (area-weighted where it shrinks)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    planes = mask.view(-1, 1, *mask.shape[-2:])
    return F.interpolate(planes, size=tuple(size), mode="area" if mask.shape[-1] >= size[-1] else "nearest"
                         ).view(*mask.shape[:-2], *size)
