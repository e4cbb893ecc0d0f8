"""Test and benchmark setup only (the library never needs it): torchvision on a CPU build of torch.

torchvision's one wheel for torch 2.13 links CUDA, and its import fails on a CPU-only machine when
it registers fake kernels for its ``nms``/``qnms`` operators, whose schemas its C++ library would
define. Defining the two schemas first lets its (and timm's) pure-Python model definitions import
and run on CPU; a brute-force ``nms`` lets its detectors run. Installed with --no-deps, see the
README. Imported before torchvision, by ``tests/conftest.py`` and the benchmarks.
"""

from __future__ import annotations

import torch


def _allow_torchvision_on_cpu() -> None:
    """Defines torchvision's ``nms``/``qnms`` schemas, with a CPU ``nms``."""
    library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 (kept alive below)
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", _brute_force_nms, "CPU")  # torchvision's detectors suppress with it
    _KEPT.append(library)


def _brute_force_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression written out box by box (a CPU ``torchvision::nms`` for the
    tests' detectors; deliberately not convscope's own)."""
    kept: list[int] = []
    for i in scores.argsort(descending=True).tolist():
        x1, y1, x2, y2 = boxes[i].tolist()
        overlaps = False
        for j in kept:
            a1, b1, a2, b2 = boxes[j].tolist()
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            union = (x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter
            overlaps = overlaps or inter / max(union, 1e-12) > threshold
        if not overlaps:
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


def torchvision_detection():
    """Lets torchvision's detectors run on a CPU build without its C++ operators (``nms`` is
    registered above; its check for the compiled library is skipped where ``nms`` is
    called, and RoI Align runs its pure-Python version uncompiled, as ``torch.compile`` would take
    seconds per shape). Returns ``torchvision.models.detection``."""
    import sys

    import torchvision.ops  # noqa: F401 (loads the modules patched below)
    from torchvision.models import detection

    sys.modules["torchvision.ops.boxes"]._assert_has_ops = lambda: None
    aligner = sys.modules["torchvision.ops.roi_align"]
    aligner._roi_align = getattr(aligner._roi_align, "__wrapped__", aligner._roi_align)
    return detection


_KEPT: list = []
if torch.version.cuda is None:  # a CPU build of torch: torchvision's CUDA-linked operators cannot load
    try:
        _allow_torchvision_on_cpu()
    except RuntimeError:  # defined already (by the process that imported this file first under another name)
        pass
