"""Detectors brought to one form before non-maximum suppression, so that a box can be explained.

A detector's own output (torchvision's list of dicts, Ultralytics' decoded grid, a Hugging Face
``ModelOutput`` with ``pred_boxes``) is turned into one tensor ``(B, N, 5 + K)`` of ``N``
candidate boxes per image, every candidate the detector scores before it suppresses any:

* ``[..., 0:4]`` the box, ``x1, y1, x2, y2`` in pixels of the image as given;
* ``[..., 4]`` its objectness, the probability that it holds an object;
* ``[..., 5:]`` its class probabilities given an object, indexed as the detector's labels are
  (a background or no-object class has probability 0).

A candidate's score for class ``c`` is ``objectness * class[c]``: what the detector itself ranks
by. Softmax detectors with a background class (SSD, Faster R-CNN, DETR's "no object") split
``p(c) = (1 - p(background)) * p(c) / (1 - p(background))``; sigmoid ones (RetinaNet, YOLOv8)
have objectness 1; FCOS ranks by ``sqrt(p(c) * centerness)``, so each factor is a square root.

Known here: torchvision's SSD, SSDlite, RetinaNet, FCOS and the R-CNNs; Ultralytics' detection
models (YOLOv8 and later heads that are not end-to-end); Hugging Face's ``*ForObjectDetection``
(DETR and its kin). Any other detector: ``Model(output=function, task="detection")`` with a
function returning this form. Nothing is imported from those packages: they are recognized by
their classes' names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from convscope.core.boxes import from_center

BOX, OBJECTNESS, CLASSES = slice(0, 4), 4, slice(5, None)


def pack(boxes: torch.Tensor, objectness: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``(B, N, 4)`` boxes, ``(B, N)`` objectness and ``(B, N, K)`` class probabilities -> ``(B, N, 5 + K)``."""
    return torch.cat([boxes, objectness.unsqueeze(-1), classes], -1)


def detector_forward(net: nn.Module) -> Callable[[nn.Module, torch.Tensor], torch.Tensor] | None:
    """The pre-suppression forward for ``net`` ``(net, x) -> (B, N, 5 + K)``, or None when ``net``
    is no detector known here (a Hugging Face detector is recognized by its output instead)."""
    names = {f"{cls.__module__}.{cls.__name__}" for cls in type(net).__mro__}
    for name, forward in _FORWARDS.items():
        if name in names:
            return forward
    return None


def is_detector(net: nn.Module) -> bool:
    """Whether ``net`` is a detector known here (see the module docstring)."""
    return detector_forward(net) is not None or type(net).__name__.endswith("ForObjectDetection")


def suppresses(net: nn.Module) -> bool:
    """Whether ``net``'s own post-processing suppresses overlapping boxes: all but set predictors
    (DETR and its kin, whose queries are trained not to duplicate one another)."""
    return not type(net).__name__.endswith("ForObjectDetection")


def in_body(net: nn.Module, name: str) -> bool:
    """Whether layer ``name`` of detector ``net`` computes features of the image (its backbone, or
    for Ultralytics every layer before the detection head), not boxes and scores."""
    if any(part == "backbone" for module, _ in net.named_modules() for part in module.split(".")):
        return "backbone" in name.split(".")
    layers = getattr(net, "model", None)
    if isinstance(layers, nn.Sequential):
        return not name.startswith(f"model.{len(layers) - 1}")
    return True


def run_network(net: nn.Module, x: torch.Tensor) -> Any:
    """What ``net`` returns for normalized ``x`` ``(B, C, H, W)``; a known detector's candidates
    in the packed form instead of its suppressed detections."""
    forward = detector_forward(net)
    if forward is not None:
        return forward(net, x)
    output = net(x)
    if isinstance(output, Mapping) and isinstance(output.get("pred_boxes"), torch.Tensor) \
            and isinstance(output.get("logits"), torch.Tensor):
        return _queries(output["logits"], output["pred_boxes"], x.shape[-2:])
    return output


def _queries(logits: torch.Tensor, centers: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """DETR's queries: ``(B, Q, K + 1)`` logits, the last "no object"; ``(B, Q, 4)`` boxes as centers
    and sizes relative to the image."""
    probabilities = logits.softmax(-1)
    objectness = 1 - probabilities[..., -1]
    classes = probabilities[..., :-1] / objectness.clamp_min(1e-12).unsqueeze(-1)
    scale = centers.new_tensor([size[1], size[0], size[1], size[0]])
    return pack(from_center(centers) * scale, objectness, classes)


def _background_split(probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over classes with class 0 the background -> objectness, class given an object."""
    objectness = 1 - probabilities[..., 0]
    classes = torch.cat([torch.zeros_like(probabilities[..., :1]), probabilities[..., 1:]], -1)
    return objectness, classes / objectness.clamp_min(1e-12).unsqueeze(-1)


def _resized_back(boxes: torch.Tensor, seen: tuple[int, int], given: tuple[int, int]) -> torch.Tensor:
    """``(N, 4)`` boxes in the resized image ``seen`` (clipped to it) -> in the image as ``given``."""
    limits = boxes.new_tensor([seen[1], seen[0], seen[1], seen[0]])
    boxes = torch.minimum(boxes.clamp_min(0), limits)
    return boxes * boxes.new_tensor([given[1] / seen[1], given[0] / seen[0]] * 2)


def _one_stage(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's SSD, RetinaNet and FCOS: every anchor's decoded box and scores."""
    images, _ = net.transform(list(x))
    features = net.backbone(images.tensors)
    features = [features] if isinstance(features, torch.Tensor) else list(features.values())
    head = net.head(features)
    anchors = net.anchor_generator(images, features)
    kind = type(net).__name__
    rows = []
    for i, (anchor, seen) in enumerate(zip(anchors, images.image_sizes)):
        if kind == "FCOS":
            boxes = net.box_coder.decode(head["bbox_regression"][i], anchor)
            classes = head["cls_logits"][i].sigmoid().sqrt()
            objectness = head["bbox_ctrness"][i, :, 0].sigmoid().sqrt()
        else:
            boxes = net.box_coder.decode_single(head["bbox_regression"][i], anchor)
            if kind == "SSD":
                objectness, classes = _background_split(head["cls_logits"][i].softmax(-1))
            else:  # RetinaNet: a sigmoid per class
                classes = head["cls_logits"][i].sigmoid()
                objectness = torch.ones_like(classes[:, 0])
        rows.append(pack(_resized_back(boxes, seen, x.shape[-2:]), objectness, classes))
    return torch.stack(rows)


def _two_stage(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's R-CNNs: every proposal, with the box its most likely class refines it to."""
    images, _ = net.transform(list(x))
    features = net.backbone(images.tensors)
    proposals, _ = net.rpn(images, features)
    heads = net.roi_heads
    logits, regression = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, proposals,
                                                                               images.image_sizes)))
    boxes = heads.box_coder.decode(regression, proposals)  # (R, K, 4), every class's refinement
    objectness, classes = _background_split(logits.softmax(-1))
    best = classes.detach().argmax(-1)
    boxes = boxes[torch.arange(len(boxes)), best]
    rows, start = [], 0
    for count, seen in zip((len(p) for p in proposals), images.image_sizes):
        end = start + count
        rows.append(pack(_resized_back(boxes[start:end], seen, x.shape[-2:]), objectness[start:end],
                         classes[start:end]))
        start = end
    longest = max(len(row) for row in rows)
    return torch.stack([torch.cat([row, row.new_zeros(longest - len(row), row.shape[1])]) for row in rows])


def _ultralytics(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Ultralytics' detection models: ``(B, 4 + K, N)`` centers, sizes and class sigmoids."""
    output = net(x)
    grid = output[0] if isinstance(output, (tuple, list)) else output
    grid = grid.transpose(1, 2)
    classes = grid[..., 4:]
    return pack(from_center(grid[..., :4]), torch.ones_like(classes[..., 0]), classes)


_FORWARDS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "torchvision.models.detection.ssd.SSD": _one_stage,
    "torchvision.models.detection.retinanet.RetinaNet": _one_stage,
    "torchvision.models.detection.fcos.FCOS": _one_stage,
    "torchvision.models.detection.generalized_rcnn.GeneralizedRCNN": _two_stage,
    "ultralytics.nn.tasks.DetectionModel": _ultralytics,
}
