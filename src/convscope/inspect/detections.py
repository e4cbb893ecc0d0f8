"""What a detector finds: its boxes after non-maximum suppression, numbered best first, and a
picture of them. Box ``k`` of an image is what ``--target box:k`` explains."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from convscope.core.boxes import nms
from convscope.core.hooks import frozen
from convscope.core.render import Picture, picture
from convscope.errors import ConvscopeError
from convscope.models.detectors import BOX, CLASSES, OBJECTNESS, suppresses
from convscope.models.model import Model, as_model

#: Boxes scoring below this are not reported; boxes overlapping a better one more than this are dropped.
THRESHOLD, OVERLAP = 0.3, 0.5
#: Colors of boxes 0, 1, 2, ... in pictures (the explained one is drawn thicker).
COLORS = ("#ff3b30", "#34c759", "#007aff", "#ff9500", "#af52de", "#00c7be", "#ffcc00", "#ff2d55")


@dataclass(frozen=True)
class Detection:
    """One box of one image: ``box`` ``x1, y1, x2, y2`` in pixels, its class and score, and which
    candidate (before suppression) it is."""
    box: tuple[float, float, float, float]
    index: int
    label: str
    score: float
    candidate: int

    def as_dict(self) -> dict:
        return asdict(self)


def detect(model: Model | nn.Module, x: torch.Tensor, *, threshold: float = THRESHOLD, overlap: float = OVERLAP,
           limit: int = 20) -> list[list[Detection]]:
    """The boxes of each image ``(B, C, H, W)`` in [0, 1], best first (at most ``limit``): each
    candidate box at most once, with its most likely class (where a detector reports one box under
    two classes, the better is kept), suppressed within its class as torchvision does (not for set
    predictors such as DETR, which suppress nothing).

    Raises:
        ConvscopeError: the model is not a detector.
    """
    model = as_model(model)
    with frozen(model.net), torch.no_grad():
        candidates = model(x.to(model.device)).float().cpu()
    if model.task_of(candidates) != "detection":
        raise ConvscopeError(f"{model.name} is not a detector known to convscope; give Model(output=function, "
                             f"task='detection') a function returning its candidate boxes (B, N, 5 + classes)")
    overlap = overlap if suppresses(model.net) else 1.0
    return [_suppressed(model, rows, threshold, overlap, limit) for rows in candidates]


def _suppressed(model: Model, rows: torch.Tensor, threshold: float, overlap: float, limit: int) -> list[Detection]:
    scores, classes = (rows[:, OBJECTNESS, None] * rows[:, CLASSES]).max(-1)
    keep = (scores >= threshold).nonzero().view(-1)
    found = []
    for label in classes[keep].unique().tolist():  # suppressed within each class
        same = keep[classes[keep] == label]
        found += same[nms(rows[same, BOX], scores[same], overlap)].tolist()
    found = sorted(found, key=lambda i: -float(scores[i]))[:limit]
    return [Detection(tuple(rows[i, BOX].tolist()), int(classes[i]),
                      model.label(int(classes[i])) if model.labels else f"class {int(classes[i])}",
                      float(scores[i]), i) for i in found]


def box_picture(image: torch.Tensor, found: list[Detection], *, chosen: int | None = None) -> torch.Tensor:
    """``(3, H, W)`` the image with its boxes drawn and numbered; with ``chosen``, that box drawn
    thick with its class and score and the others thin with their numbers only."""
    from PIL import Image, ImageDraw

    image = image.expand(3, -1, -1)
    canvas = Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    pen = ImageDraw.Draw(canvas)
    order = [k for k in reversed(range(len(found))) if k != chosen] + ([chosen] if chosen is not None else [])
    for k in order:
        detection, color = found[k], COLORS[k % len(COLORS)]
        x1, y1, x2, y2 = detection.box
        named = chosen is None or k == chosen
        pen.rectangle([x1, y1, x2, y2], outline=color, width=3 if k == chosen else 1)
        text = f"{k}: {detection.label} {detection.score:.2f}" if named else str(k)
        left, top, right, bottom = pen.textbbox((x1 + 2, y1 + 1), text)
        pen.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=color)
        pen.text((x1 + 2, y1 + 1), text, fill="white")
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def detections_picture(model: Model | nn.Module, x: torch.Tensor, index: int = 0, **options) -> Picture:
    """Image ``index`` of ``x`` with the boxes :func:`detect` finds."""
    found = detect(model, x[index:index + 1], **options)[0]
    caption = f"{len(found)} boxes above score {options.get('threshold', THRESHOLD)}: " + ", ".join(
        f"{k}: {d.label} {d.score:.2f}" for k, d in enumerate(found[:6])) + (" ..." if len(found) > 6 else "")
    return picture(box_picture(x[index].cpu(), found), caption, boxes=len(found))
