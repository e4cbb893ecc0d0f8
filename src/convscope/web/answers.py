"""What the page lists under the image, for the model's task, each answer with the ``--target``
that explains it: a classifier's top classes, a detector's boxes, a segmenter's regions, a
regression's outputs. (An embedding has no answer of its own: it is explained against a reference.)

A target typed into the page may take every form of :data:`~convscope.attribute.targets.GRAMMAR`
except those that name a file on the server (``@MASK.png``, ``similar:IMAGE``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from convscope.core.hooks import frozen
from convscope.errors import ConvscopeError, shorten
from convscope.inspect.detections import detect
from convscope.inspect.predictions import top_predictions
from convscope.models.model import Model

#: What each task's answers are called on the page.
TITLES = {"classification": "Top {top}", "multi-label": "Top {top} labels", "detection": "Boxes",
          "segmentation": "Regions", "regression": "Outputs", "embedding": "An embedding"}
#: What the attribution form's target field explains when left empty.
DEFAULT_TARGETS = {"classification": "top class", "multi-label": "top label", "detection": "box 0, the best",
                   "segmentation": "the largest region", "regression": "the output", "embedding": "a reference"}


def answers(model: Model, task: str, x: torch.Tensor, top: int,
            probabilities: Callable[[torch.Tensor], torch.Tensor]) -> list[dict]:
    """The answers for one image ``x`` ``(1, C, H, W)`` at the model's input size.

    Each is a dict with ``label``, ``target`` and, by task: ``probability`` (classes), ``score`` and
    ``box`` ``[x1, y1, x2, y2]`` in input pixels (boxes), ``share`` of the pixels (regions) or
    ``value`` (a regression's outputs). ``probabilities`` maps images to class probabilities (the
    server batches it)."""
    if task in ("classification", "multi-label"):
        prefix = "sigmoid:" if task == "multi-label" else ""
        return [{**p.as_dict(), "target": f"{prefix}{p.index}"}
                for p in top_predictions(model, probabilities(x), top=top)[0]]
    if task == "detection":
        return [{"label": d.label, "index": d.index, "score": d.score, "box": [round(v, 1) for v in d.box],
                 "target": f"box:{k}"} for k, d in enumerate(detect(model, x)[0])]
    with frozen(model.net), torch.no_grad():
        output = model(x.to(model.device)).float().cpu()
    if task == "segmentation":
        return _regions(model, output[0], top)
    if task == "regression":
        return [{"label": f"output {i}", "value": float(v), "target": f"up:{i}"}
                for i, v in enumerate(output.flatten(1)[0][:top])]
    return []


def _regions(model: Model, scores: torch.Tensor, top: int) -> list[dict]:
    """``scores`` ``(classes, h, w)``: the ``top`` classes by the share of pixels predicted as each."""
    counts = torch.bincount(scores.argmax(0).flatten(), minlength=scores.shape[0])
    shares = counts.float() / counts.sum()
    order = [int(i) for i in shares.argsort(descending=True) if counts[i] > 0][:top]
    return [{"label": model.label(i), "index": i, "share": float(shares[i]),
             "target": f"region:{i}"} for i in order]


def check_typed_target(target: str | None) -> None:
    """Refuses, in one line, the target forms that would read a file on the server."""
    if target is not None and ("@" in target or target.split(":")[0] in ("similar", "different")):
        raise ConvscopeError(f"the target {shorten(target)!r} names a file; the explorer takes CLASS, sigmoid:CLASS, "
                             f"up[:INDEX], down[:INDEX], region:CLASS[~OTHER] or box:K[:PART]")
