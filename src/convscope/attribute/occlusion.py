"""Occlusion (Zeiler & Fergus 2014, arXiv:1311.2901): slide a patch, watch the class probability.

For a classifier's class, the score watched is its probability; for any other target (a
segmenter's region, a detector's box, a regression's output: :mod:`convscope.attribute.targets`)
it is that objective's value, which must be read from the network's output.

Three ways to evaluate the occluded copies, all batched:

* ``exact`` — incremental inference (Krypton, SIGMOD 2019): after one full forward, each copy
  recomputes only the region of each layer that its patch can reach; equal to brute force.
* ``fast`` — Krypton's adaptive drill-down: an exact pass at twice the stride, then ``drill`` of
  all positions more, first the centres of the coarse cells (the checkerboard is complete at
  ``drill`` 0.23 on a 27x27 grid), then the midpoints of their sides, each time where the known
  neighbours disagree most; every position left is the mean of its known neighbours. Optionally with
  projective fields capped at ``limit`` of each layer's side (Krypton's thresholding).
  Approximate; its SSIM to ``exact`` is reported by the tour and the benchmark. On the default
  model the map is rough at stride 8 (neighbouring positions differ by about half the map's
  standard deviation), so any guess from neighbours is weak, and spreading the exact positions
  evenly beats concentrating them: SSIM 0.80-0.88 at ``drill=0.2``, 0.92-0.97 at 0.5 (the default,
  the lowest that keeps every sample photo at 0.9 or more), 0.94-0.98 at 0.6 (cat, coffee,
  astronaut, rocket), against 0.74-0.85, 0.89-0.94 and 0.93-0.97 when the drill-down picked among
  all fine positions and the rest were interpolated from the coarse grid alone. With 300 of the 729
  positions (the cost of 8x Captum's best batching) SSIM is 0.74-0.84; positions picked knowing the
  exact map would reach 0.91-0.94 (``benchmarks/occlusion_bound.py``), so meeting both takes a pick
  nearly as good as the answer; picking by the local range of known values in rounds, or by the
  gradient's linear estimate of each patch's effect (correlation 0.0-0.14 with the map), did
  worse than this scheme. Thresholding fared
  worse (SSIM 0.71 at ``limit=0.8``), so it is off by default. Also measured and dropped: skipping
  changes below a tolerance (sparse per-pixel deltas; SSIM 0.96 at 3% of a layer's deviation, but
  no faster than exact on this CPU: the 7x7 stage stays 76% changed), and correcting the filled-in
  positions with the network linearized at a layer (from the last block: SSIM 0.96, but reaching
  it costs about 90% of exact; from the end of the 14x14 stage, about half of exact: only
  0.88-0.93 with half the positions computed, even with the best-fitted correction), and int8 1x1
  convolutions (``torch._int_mm``, 3.5-5x faster than fp32 alone, but 1.1-1.3x slower in the
  engine once activations are quantized and dequantized, and SSIM only 0.59-0.87 over the whole
  grid: the probability changes that make the map are finer than int8's steps).
  ``precision`` runs the fast mode's replay in ``float16`` or ``bfloat16`` (for GPUs with fast
  half-precision units). Measured with every position computed (drill 1.0), on a 2-core Intel CPU
  (AVX512-BF16/FP16, no AMX): SSIM to exact 0.976 (cat) and 0.984 (coffee) in float16, only 0.66
  and 0.65 in bfloat16 (8 mantissa bits are too coarse for the map's probability steps), and no
  faster than float32 there (oneDNN half-precision convolutions run at 0.56-1.04x of float32). On a
  CPU without oneDNN float16 convolutions (an AMD EPYC with AVX512-BF16 but not -FP16) float16 runs
  on PyTorch's reference kernels, 12x slower than float32 (36-40 s against 3.1 s at the default
  drill): :func:`fast_on_cpu` tells, and ``occlusion`` warns.
* ``brute`` — full forward of every copy (the reference).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from convscope.attribute.targets import class_indices, objective_for, task_of
from convscope.core.hooks import frozen
from convscope.core.incremental import IncrementalInference, Unreplayable
from convscope.core.objectives import OUTPUT, Objective
from convscope.core.legend import Panel, Scale, row
from convscope.core.render import Picture, overlay, picture
from convscope.core.selfcheck import LOOSE, output_tolerance, relative_error
from convscope.core.smoothing import gaussian_blur
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model

FILLS = ("zero", "grey", "mean", "blur")
MODES = ("exact", "fast", "brute")
PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Fast mode: the fraction of all positions computed exactly after the coarse pass (0.5: 77% of the
#: positions in all, SSIM >= 0.9 to exact on the sample photos; 0.2 is faster, SSIM 0.80-0.88).
DRILL = 0.5
CPU_CHUNK, GPU_CHUNK = 32, 256
log = logging.getLogger("convscope.occlusion")


@dataclass
class OcclusionMap:
    """Where covering the image changes the target's probability (or score, for other targets).

    Attributes:
        probabilities: ``(B, rows, cols)`` target probability (or score) with the patch at each position.
        baseline: ``(B,)`` target probability (or score) of the unoccluded image.
        attribution: ``(B, H, W)`` mean probability (or score) drop over the patches covering each pixel.
        patch, stride: patch side and step, in pixels.
        images: ``(B, 3, H, W)`` the images.
        notes: how the copies were evaluated where it differs from what ``mode`` asked, and why.
    """

    probabilities: torch.Tensor
    baseline: torch.Tensor
    attribution: torch.Tensor
    patch: int
    stride: int
    images: torch.Tensor
    notes: list[str] = field(default_factory=list)
    watched: str = "probability"  #: what ``probabilities`` holds: "probability", or the objective's name

    @property
    def map(self) -> torch.Tensor:
        """``(B, H, W)`` the attribution, as every method's map is read."""
        return self.attribution

    def picture(self, index: int = 0) -> Picture:
        """The image beside the drop of the target caused by covering each place (bright = important),
        with its colour bar; the caption gives the unoccluded value and the lowest."""
        image = self.images[index]
        drop = self.attribution[index]
        baseline, lowest = float(self.baseline[index]), float(self.probabilities[index].min())
        if float(drop.min()) < 0:  # covering raised the target somewhere: a diverging scale, white at zero
            top = max(float(drop.abs().max()), 1e-12)
            scale = Scale(-top, top, "RdBu_r", "drop when covered (blue: it rises)")
        else:
            scale = Scale(0.0, max(float(drop.max()), 1e-12), "inferno", "drop when covered")
        panels = [Panel(image, "the image"),
                  Panel(overlay(image, drop, alpha=0.6, cmap=scale.cmap, vmin=scale.low, vmax=scale.high),
                        f"covered by {self.patch}px patches, every {self.stride}px", scale)]
        return picture(row(panels), f"occlusion {self.patch}px/{self.stride}: {self.watched} {baseline:.3f} "
                       f"unoccluded, down to {lowest:.3f}", baseline=baseline, lowest=lowest,
                       patch=self.patch, stride=self.stride)

    def _repr_png_(self) -> bytes:
        return self.picture()._repr_png_()


def occlusion(model: Model | nn.Module, x: torch.Tensor, target: int | str | torch.Tensor | Objective | None = None,
              *, patch: int = 16,
              stride: int = 8, fill: str = "grey", mode: str = "exact", chunk_size: int | None = None,
              drill: float = DRILL, limit: float | None = None, precision: str = "float32",
              progress: bool = False, callback: Callable[[float], None] | None = None) -> OcclusionMap:
    """Occlusion map of ``target`` for each image.

    Args:
        model: a Model or network.
        x: ``(B, C, H, W)`` images in [0, 1].
        target: class index, or ``(B,)`` indices (the top class when None, for a classifier);
            or any target of :func:`~convscope.attribute.targets.objective_for` that reads the
            output (a ``--target`` string, an Objective).
        patch, stride: patch side and step in pixels.
        fill: ``zero``, ``grey`` (0.5), ``mean`` (the image's mean color) or ``blur``.
        mode: ``exact``, ``fast`` or ``brute`` (see the module docstring).
        chunk_size: most occluded copies per forward pass (each round's copies are split evenly).
        drill: fast mode: fraction of all positions evaluated exactly after the coarse pass.
        limit: fast mode: cap on each layer's recomputed window, as a fraction of its side.
        precision: fast mode: ``float32``, ``float16`` or ``bfloat16`` arithmetic in the replay.
        progress: show a progress bar.
        callback: called after each batch of copies with the fraction of the work done, in (0, 1];
            an exception it raises stops the computation (how the web explorer cancels).
    """
    model = as_model(model)
    _check(x, patch, stride, fill, mode, drill, precision)
    if model.device.type == "cpu" and not fast_on_cpu(precision):
        warnings.warn(f"this CPU has no oneDNN {precision} convolutions: occlusion in {precision} runs on slow "
                      f"reference kernels, many times slower than float32; precision is meant for GPUs", stacklevel=2)
    readers, watched = _readers(model, x, target)
    rows, cols = _positions(x.shape[-2], patch, stride), _positions(x.shape[-1], patch, stride)
    chunk = chunk_size or (GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK)
    maps, baselines, notes = [], [], []
    planned = len(x) * _planned(len(rows) * len(cols), len(_every_other(rows)) * len(_every_other(cols)), mode, drill)
    with frozen(model.net), torch.no_grad(), _Progress(planned, progress, callback) as report:
        for image, read in zip(x.to(model.device), readers):
            scorer = _Scorer(model, image[None], read, patch, fill, mode, chunk, limit, PRECISIONS[precision],
                             report)
            maps.append(scorer.drill_down(rows, cols, drill) if mode == "fast" else scorer.grid(rows, cols))
            baselines.append(scorer.baseline)
            notes += [note for note in scorer.notes if note not in notes]
    probabilities, baseline = torch.stack(maps), torch.stack(baselines)
    attribution = _spread(baseline[:, None, None] - probabilities, x.shape[-2:], patch, stride)
    images = model.to_channels(x).expand(-1, 3, -1, -1).cpu()
    return OcclusionMap(probabilities, baseline, attribution, patch, stride, images, notes, watched)


def _readers(model: Model, x: torch.Tensor, target) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], str]:
    """Per image, ``outputs (N, ...) -> (N,)`` the watched score of N copies, and what it is."""
    by_class = target is None or isinstance(target, (int, torch.Tensor)) or (
        isinstance(target, str) and ":" not in target and target not in ("up", "down"))
    if by_class and task_of(model, x) in ("classification", "multi-label"):
        indices = class_indices(model, x, target)
        sigmoid = task_of(model, x) == "multi-label"
        same = bool((indices == indices[0]).all())
        return [(lambda out, i=int(i): (out.float().sigmoid() if sigmoid else out.float().softmax(-1))[:, i])
                for i in indices.tolist()], f"probability of {model.label(int(indices[0]))}" if same else "probability"
    objective = objective_for(model, x, target, perturbation=True)
    inner = [layer for layer in objective.layers if layer != OUTPUT]
    if inner:
        raise ConvscopeError(f"occlusion watches the network's output; {objective.name} reads layer {inner[0]} "
                             f"(explain a unit with a gradient method: convscope saliency --layer)")
    return [(lambda out, part=objective.example(i): part({OUTPUT: out.float()})) for i in range(len(x))], \
        objective.name


def _check(x: torch.Tensor, patch: int, stride: int, fill: str, mode: str, drill: float, precision: str) -> None:
    if fill not in FILLS:
        raise ConvscopeError(f"unknown fill {fill!r}; accepted: {', '.join(FILLS)}")
    if mode not in MODES:
        raise ConvscopeError(f"unknown occlusion mode {mode!r}; accepted: {', '.join(MODES)}")
    if precision not in PRECISIONS:
        raise ConvscopeError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}")
    if precision != "float32" and mode != "fast":
        raise ConvscopeError(f"precision {precision} is approximate: give it with mode fast ({mode} runs in float32)")
    if not 0.0 <= drill <= 1.0:
        raise ConvscopeError(f"drill {drill}: give a fraction of the positions between 0 and 1")
    if not 1 <= patch <= min(x.shape[-2:]) or stride < 1:
        raise ConvscopeError(f"patch {patch} and stride {stride} must be >= 1 and the patch at most the image side "
                             f"({min(x.shape[-2:])})")


def fast_on_cpu(precision: str) -> bool:
    """Whether oneDNN has convolutions in ``precision`` on this CPU (half types need AVX512-FP16/BF16 or AMX)."""
    probe = {"float16": "_is_mkldnn_fp16_supported", "bfloat16": "_is_mkldnn_bf16_supported"}.get(precision)
    supported = getattr(torch.ops.mkldnn, probe, None) if probe else None  # a private probe: absent -> assume yes
    return supported is None or bool(supported())


def _planned(positions: int, coarse: int, mode: str, drill: float) -> int:
    """How many occluded copies one image needs: every position, or fast mode's coarse grid and drill-down."""
    return coarse + _drill_count(positions, coarse, drill) if mode == "fast" else positions


def _drill_count(positions: int, coarse: int, drill: float) -> int:
    """Fast mode: how many of the positions left after the coarse grid are computed exactly."""
    return min(int(drill * positions), positions - coarse)


def _positions(length: int, patch: int, stride: int) -> torch.Tensor:
    """Top-left offsets of the patch along one side, the last one flush with the edge."""
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return torch.tensor(starts)


class _Progress:
    """Counts the occluded copies evaluated, for a progress bar and the caller's callback."""

    def __init__(self, planned: int, show: bool, callback: Callable[[float], None] | None) -> None:
        self.planned, self.done, self.callback = planned, 0, callback
        self.bar = tqdm(total=planned, desc="occlusion", unit="copy", disable=not show, leave=False)

    def __call__(self, count: int) -> None:
        self.done += count
        self.bar.update(count)
        if self.callback:
            self.callback(self.done / self.planned)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exception) -> None:
        self.bar.close()


class _Scorer:
    """The watched score (a class probability) of one image with the patch at given positions."""

    def __init__(self, model: Model, x: torch.Tensor, read: Callable[[torch.Tensor], torch.Tensor], patch: int,
                 fill: str, mode: str, chunk: int, limit: float | None, dtype: torch.dtype,
                 report: Callable[[int], None]) -> None:
        self.model, self.x, self.read, self.patch, self.dtype = model, x, read, patch, dtype
        self.chunk, self.report = chunk, report
        self.source = _fill_source(x, fill)
        self.notes: list[str] = []
        self.engine = None if mode == "brute" else self._replay(limit if mode == "fast" else None, dtype)
        self.baseline = read(model(x))[0].cpu()

    def _replay(self, limit: float | None, dtype: torch.dtype) -> IncrementalInference | None:
        """The incremental replay, once it matched brute force on two occluded copies (the first
        position and the middle one) within the float32 tolerance of :mod:`convscope.core.selfcheck`
        (the fast mode's thresholds and half precisions are approximate by design and not checked);
        None (brute force, exact) where it did not or cannot."""
        try:
            engine = IncrementalInference(self.model, self.x, limit=limit, channels_last=self.x.device.type == "cpu",
                                          dtype=dtype)
        except Unreplayable as reason:
            return self._brute_force(str(reason))
        if limit is not None or dtype != torch.float32:
            return engine  # approximate by design (its overflow is refused where the scores are read)
        middle = [(side - self.patch) // 2 for side in self.x.shape[-2:]]
        top, left = (torch.tensor([0, centre], device=self.x.device) for centre in middle)
        values = _patches(self.source, top, left, self.patch)
        try:
            replayed = engine(top, left, values).float()
        except RuntimeError as failure:  # an op the replay batches wrongly (DETR's attention reshapes)
            return self._brute_force(f"the incremental replay failed on this network ({str(failure)[:80]})")
        error = relative_error(replayed, self.model(_paste(self.x, top, left, values)))
        tolerance = output_tolerance(self.model, self.x) or LOOSE
        if not error <= tolerance:
            return self._brute_force(f"the incremental replay's logits were {error:.1e} from brute force's "
                                     f"(tolerance {tolerance:.1e})")
        return engine

    def _brute_force(self, reason: str) -> None:
        log.info("occlusion runs brute force: %s", reason)
        self.notes.append(f"brute force: {reason}")
        return None

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """``(N,)`` probabilities with the patch's top-left corner at each ``(N, 2)`` position."""
        probs = []  # even batches: passes have fixed costs (default model: 4 copies 30 ms, 28 copies 84 ms)
        for batch in positions.to(self.x.device).tensor_split(math.ceil(len(positions) / self.chunk)):
            top, left = batch[:, 0], batch[:, 1]
            values = _patches(self.source, top, left, self.patch)
            logits = self.engine(top, left, values) if self.engine else self.model(_paste(self.x, top, left, values))
            probs.append(self.read(logits).cpu())
            self.report(len(batch))
        probs = torch.cat(probs)
        if self.dtype != torch.float32 and not torch.isfinite(probs).all():
            raise ConvscopeError(f"occlusion in {str(self.dtype).removeprefix('torch.')} overflowed (non-finite "
                                 f"scores); use precision float32")
        return probs

    def grid(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``(rows, cols)`` probabilities over the whole grid of positions."""
        return self.at(torch.cartesian_prod(rows, cols)).view(len(rows), len(cols))

    def drill_down(self, rows: torch.Tensor, cols: torch.Tensor, fraction: float) -> torch.Tensor:
        """``(rows, cols)`` probabilities: the coarse grid (every other position) exactly, then ``fraction``
        of all positions more, first the centres of its cells, then the midpoints of their sides, each
        time where the known neighbours disagree most; every position left is its neighbours' mean."""
        coarse_rows, coarse_cols = _every_other(rows), _every_other(cols)
        values = torch.zeros(len(rows), len(cols))
        known = torch.zeros_like(values, dtype=torch.bool)
        known[coarse_rows[:, None], coarse_cols[None, :]] = True
        self._evaluate(values, known.flatten().nonzero()[:, 0], rows, cols)
        budget = _drill_count(values.numel(), int(known.sum()), fraction)
        off_rows = torch.ones(len(rows), dtype=torch.bool).index_fill(0, coarse_rows, False)
        off_cols = torch.ones(len(cols), dtype=torch.bool).index_fill(0, coarse_cols, False)
        centres = off_rows[:, None] & off_cols[None, :]
        for candidates in (centres, ~centres):
            candidates = candidates & ~known
            count = min(budget, int(candidates.sum()))
            chosen = _disagreement(values, known).masked_fill(~candidates, -1.0).flatten().topk(count).indices
            self._evaluate(values, chosen, rows, cols)
            known.view(-1)[chosen] = True
            budget -= count
        return _fill_in(values, known)

    def _evaluate(self, values: torch.Tensor, flat: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
        """Computes the positions at the given flat indices of the ``(rows, cols)`` grid into ``values``."""
        if len(flat):
            values.view(-1)[flat] = self.at(torch.stack([rows[flat // len(cols)], cols[flat % len(cols)]], dim=1))


def _disagreement(fine: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``(rows, cols)`` range (max - min) of the known values among each position's 3x3 neighbours.

    On the default model the occlusion map is rough at the fine stride: with the coarse grid
    interpolated, picking positions by this range gave SSIM 0.74 (cat) and 0.83 (coffee) at 20%
    drill-down, against 0.68 and 0.78 when picking the largest interpolated drops and 0.73 and
    0.79 when picking at random.
    """
    def highest(values):
        return F.max_pool2d(values.masked_fill(~known, -torch.inf)[None, None], 3, 1, 1)[0, 0]
    return highest(fine) + highest(-fine)


def _every_other(positions: torch.Tensor) -> torch.Tensor:
    """Indices 0, 2, 4, ... and always the last one."""
    chosen = list(range(0, len(positions), 2))
    if chosen[-1] != len(positions) - 1:
        chosen.append(len(positions) - 1)
    return torch.tensor(chosen)


def _fill_in(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``values`` where known; elsewhere the mean of the known ones among the four nearest neighbours,
    or among the eight when none of the four is known (on the coarse grid alone that is bilinear
    interpolation midway between coarse positions). Every position must have a known neighbour."""
    def neighbour_mean(kernel):
        weights = kernel.view(1, 1, 3, 3)
        total = F.conv2d((values * known)[None, None], weights, padding=1)[0, 0]
        count = F.conv2d(known.float()[None, None], weights, padding=1)[0, 0]
        return total / count.clamp_min(1), count > 0
    four, has_four = neighbour_mean(torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    eight, _ = neighbour_mean(torch.tensor([[1.0, 1, 1], [1, 0, 1], [1, 1, 1]]))
    return torch.where(known, values, torch.where(has_four, four, eight))


def _fill_source(x: torch.Tensor, fill: str) -> torch.Tensor:
    """A ``(1, C, H, W)`` image whose pixels replace the occluded ones."""
    if fill == "zero":
        return torch.zeros_like(x)
    if fill == "grey":
        return torch.full_like(x, 0.5)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    return gaussian_blur(x, float(max(x.shape[-1] // 32, 2)))


def _patches(source: torch.Tensor, top: torch.Tensor, left: torch.Tensor, patch: int) -> torch.Tensor:
    offsets = torch.arange(patch, device=source.device)
    rows, cols = (top[:, None] + offsets)[:, :, None], (left[:, None] + offsets)[:, None, :]
    return source[0][:, rows, cols].permute(1, 0, 2, 3)


def _paste(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    copies = x.repeat(len(top), 1, 1, 1)
    patch = values.shape[-1]
    for i, (y, x0) in enumerate(zip(top.tolist(), left.tolist())):
        copies[i, :, y:y + patch, x0:x0 + patch] = values[i]
    return copies


def _spread(drops: torch.Tensor, size, patch: int, stride: int) -> torch.Tensor:
    """Per-pixel mean of the drops of every patch position covering that pixel: ``(B, H, W)``."""
    rows, cols = _positions(size[0], patch, stride), _positions(size[1], patch, stride)
    total = torch.zeros(drops.shape[0], *size)
    count = torch.zeros(*size)
    for i, y in enumerate(rows.tolist()):
        for j, x0 in enumerate(cols.tolist()):
            total[:, y:y + patch, x0:x0 + patch] += drops[:, i, j, None, None]
            count[y:y + patch, x0:x0 + patch] += 1
    return total / count.clamp_min(1)
