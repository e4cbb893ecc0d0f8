"""Stand-ins prove themselves on the host where they run, before they are trusted.

A fast path runs something other than the user's network as it is: the copy with batch norms and
pads folded into convolutions (:mod:`convscope.core.folding`), or the network with channels-last
weights and activations (:mod:`convscope.core.layout`). Each computes the same function in exact
arithmetic, but not with the same kernels or the same rounding, and networks amplify rounding
very differently (folding rounds the merged weights to float32 once: harmless on most networks,
8.5e-4 of MNASNet's input gradient with batch-norm statistics from four photos, a network whose
float64 gradient moves by 1.5e-2 under one float32 rounding of the pixels, so that it passes).

So a stand-in is trusted for a model, device and input size only once its output and its input
gradient matched the original network's computed by plain autograd in float64:

* the probe is the method's first image (shrunk to the model's input size when larger) and its
  mirror image; the stand-in runs on the image alone and on the pair (batch 1 and batch 2);
* the differentiated scalar is a fixed random projection of every output value, so that every
  output takes part, whatever the network returns;
* the tolerances come from float32's own error there: :data:`SLACK` times the relative error (in
  the Euclidean norm) of the original's plain float32 autograd, output and gradient each, never
  below :data:`FLOOR`. A ReLU network's gradient is not continuous: float32 rounding flips the
  units nearest a kink, and which ones depends on the kernels, so one float32 run can flip none
  and understate the error any other float32 computation makes (RepVGG at 64 px: 7e-7 plain,
  3e-3 channels-last). The gradient's tolerance therefore also covers how far the float64
  gradient itself moves when the pixels move by one float32 rounding (:func:`_shaken`), a
  measure that favours no stand-in. Where no float64 copy can be made (a network that cannot be
  copied, or an op without float64), the reference is the original's float32 autograd and the
  tolerance :data:`LOOSE`.

The reference runs at batch 2 because PyTorch's CPU batch norm (eval mode) returns wrong input
gradients at batch 1 when its input is in the default layout and the incoming gradient is
channels-last-strided with a batch stride other than ``C*H*W``: a network that flattens a batch
norm's output into tokens (LeViT, lambda layers) gets that gradient, and plain autograd at batch
1, in float32 and float64 alike, is then off by 100% (forward-mode differentiation and batch 2
agree with each other, and with the channels-last path). The same kernel fails when the batch
norm's input is a channel slice of a larger tensor (lambda layers split q, k and v so), in both
layouts. A stand-in checked at batch 1 shows it, and :mod:`convscope.core.fastpath` then runs a
single image as a pair.

Verdicts are cached per network (and its parameters' versions), stand-in, device, probe size and
whether oneDNN is enabled,
logged at debug level on ``convscope.selfcheck``, and listed by :func:`verdicts`.
"""

from __future__ import annotations

import copy
import itertools
import logging
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from convscope.core.hooks import frozen
from convscope.core.layout import channels_last as channels_last_weights
from convscope.models.detectors import run_network
from convscope.models.model import Model

log = logging.getLogger("convscope.selfcheck")

EPSILON = torch.finfo(torch.float32).eps
#: How much further from float64 than the original's own float32 arithmetic a stand-in may be.
SLACK = 4.0
#: The smallest tolerance: a few float32 roundings of the largest value.
FLOOR = 32 * EPSILON
#: The tolerance against a float32 reference, where no float64 copy of the network can be made.
LOOSE = 1e-3


@dataclass(frozen=True)
class Verdict:
    """How a stand-in compared with the original network in float64, on one probe.

    Attributes:
        path: the stand-in, e.g. ``"folded copy, channels-last"``.
        size: ``(h, w)`` of the probe.
        device: where it ran.
        single, batched: ``(output, gradient)`` relative differences from the float64 reference in
            the Euclidean norm, for the image alone and for the pair (the largest over its two
            images). The norm, not the largest element: in a ReLU network float32 flips the units
            nearest a kink, which moves a few pixels' gradient by their whole value, and no faster
            path can avoid that.
        tolerance: ``(output, gradient)``, what each may be (see the module docstring).
        problem: why the stand-in could not be compared (it raised), or ``""``.
    """

    path: str
    size: tuple[int, int]
    device: str
    single: tuple[float, float]
    batched: tuple[float, float]
    tolerance: tuple[float, float]
    problem: str = ""

    def trusted_at(self, batch: int) -> bool:
        """Whether the stand-in may run a batch of this size (1, or any larger: checked at 2)."""
        errors = self.single if batch == 1 else self.batched
        return not self.problem and all(e <= t for e, t in zip(errors, self.tolerance))

    @property
    def trusted(self) -> bool:
        return self.trusted_at(1) and self.trusted_at(2)

    def __str__(self) -> str:
        where = f"{self.path} at {self.size[0]}x{self.size[1]} on {self.device}"
        if self.problem:
            return f"{where}: not used ({self.problem})"
        numbers = "; ".join(f"{label}: output {errors[0]:.1e}, input gradient {errors[1]:.1e}"
                            for label, errors in (("one image", self.single), ("two", self.batched)))
        verdict = "used" if self.trusted else "used for batches of 2 or more" if self.trusted_at(2) else "not used"
        return (f"{where}: from float64, {numbers} (tolerances {self.tolerance[0]:.1e}, {self.tolerance[1]:.1e}): "
                f"{verdict}")


@dataclass
class _Reference:
    probe: torch.Tensor             # (2, C, h, w) pixels: the image and its mirror
    weights: list[torch.Tensor]     # a random projection for each floating output, float64
    outputs: list[torch.Tensor]     # the original's outputs, float64
    gradient: torch.Tensor          # (2, C, h, w) float64
    output_tolerance: float
    gradient_tolerance: float


_REFERENCES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, _Reference | None]] = weakref.WeakKeyDictionary()
_VERDICTS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Verdict]] = weakref.WeakKeyDictionary()
_SIZES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int | None]] = weakref.WeakKeyDictionary()


def check(model: Model, stand_in: nn.Module, x: torch.Tensor, *, channels_last: bool, path: str) -> Verdict | None:
    """The verdict on running ``stand_in`` (a copy of ``model.net``, or ``model.net`` itself) in place
    of ``model.net``, channels-last or not, for images like ``x`` ``(B, C, H, W)`` in [0, 1].

    Computed once per network state, stand-in, device and probe size; None when the original
    network refuses every probe (the method then runs the original and reports the fault itself).
    """
    with torch.inference_mode(False):  # the probe and the reference must serve autograd
        probe = _probe(model, x)
        if probe is None:
            return None
        key = (path, *_where(probe), signature(model.net))
        known = _VERDICTS.setdefault(model.net, {})
        if key not in known:
            reference = _reference(model, probe)
            if reference is None:
                return None
            known[key] = _compare(model, stand_in, reference, channels_last, path)
            log.debug("%s: %s", model.name, known[key])
    return known[key]


def output_tolerance(model: Model, x: torch.Tensor) -> float | None:
    """How far (relative, Euclidean norm) a stand-in's output may be from the original's for images
    like ``x``: :data:`SLACK` times float32's own error there; None when the network refuses them."""
    with torch.inference_mode(False):
        probe = _probe(model, x)
        reference = None if probe is None else _reference(model, probe)
    return None if reference is None else reference.output_tolerance


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``|value - reference| / |reference|`` in the Euclidean norm, per batch item, the largest."""
    difference = (value.double() - reference.double()).flatten(1).norm(dim=1)
    return float((difference / reference.double().flatten(1).norm(dim=1).clamp_min(1e-300)).max())


def verdicts(model: Model) -> list[Verdict]:
    """Every verdict made so far on ``model``'s network, oldest first."""
    return list(_VERDICTS.get(model.net, {}).values())


def signature(net: nn.Module) -> tuple:
    """What identifies a network's numbers: each parameter's and buffer's storage, version and type."""
    return tuple((t.data_ptr(), t._version, t.dtype) for t in itertools.chain(net.parameters(), net.buffers()))


def _where(probe: torch.Tensor) -> tuple:
    """Device, size and kernel library: what decides the kernels a network runs on."""
    return str(probe.device), tuple(probe.shape[-2:]), torch.backends.mkldnn.enabled


def _probe(model: Model, x: torch.Tensor) -> torch.Tensor | None:
    """``(2, C, h, w)``: the first image (at the input size when larger) and its mirror, at a size the
    original network takes; None when it takes neither. Which size it takes is remembered per
    network and image size, so that a known answer costs no forward pass."""
    image = x[:1].detach().to(model.device).clone()  # not an inference tensor
    larger = image.shape[-2] * image.shape[-1] > model.input_size[0] * model.input_size[1]
    candidates = [model.prepare(image), image] if larger else [image, model.prepare(image)]
    sizes = _SIZES.setdefault(model.net, {})
    asked = (str(image.device), tuple(image.shape[-2:]))
    if asked not in sizes:
        sizes[asked] = next((index for index, candidate in enumerate(candidates) if _takes(model, candidate)), None)
    chosen = sizes[asked]
    return None if chosen is None else torch.cat([candidates[chosen], candidates[chosen].flip(-1)]).float()


def _takes(model: Model, image: torch.Tensor) -> bool:
    try:
        with frozen(model.net), torch.no_grad():
            model(torch.cat([image, image.flip(-1)]).float())
        return True
    except Exception:  # the user's forward refused this size
        return False


def _reference(model: Model, probe: torch.Tensor) -> _Reference | None:
    """The original network's float64 outputs and input gradient on the probe, and the tolerances
    from its float32 arithmetic; cached per network state, device and size."""
    key = (*_where(probe), signature(model.net))
    known = _REFERENCES.setdefault(model.net, {})
    if key not in known:
        known[key] = _measure(model, probe)
    return known[key]


def _measure(model: Model, probe: torch.Tensor) -> _Reference | None:
    with frozen(model.net), torch.no_grad():
        leaves, _ = tree_flatten(run_network(model.net, model.normalize(probe)))  # every output, not only the one read
    shapes = [o.shape for o in leaves if isinstance(o, torch.Tensor) and o.is_floating_point()]
    if not shapes:
        return None
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(shape, generator=generator, dtype=torch.float64).to(probe.device) for shape in shapes]
    outputs32, gradient32 = _differentiate(model, model.net, probe, weights)
    try:
        double = copy.deepcopy(model.net).double()
        outputs64, gradient64 = _differentiate(model, double, probe.double(), weights)
    except Exception as error:  # cannot be copied, or an op without float64: a float32 reference
        log.debug("%s: no float64 reference (%s); float32 autograd with tolerance %g", model.name,
                  type(error).__name__, LOOSE)
        return _Reference(probe, weights, [o.double() for o in outputs32], gradient32.double(), LOOSE, LOOSE)
    _, shaken64 = _differentiate(model, double, _shaken(probe.double()), weights)
    kink = relative_error(shaken64, gradient64)
    return _Reference(probe, weights, outputs64, gradient64,
                      max(FLOOR, SLACK * _outputs_error(outputs32, outputs64)),
                      max(FLOOR, SLACK * max(relative_error(gradient32, gradient64), kink)))


def _shaken(images: torch.Tensor) -> torch.Tensor:
    """``images`` with each value moved by about one float32 rounding (a fixed random draw): the
    change float32 arithmetic makes to a network's input, as a perturbation without kernels."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1), dtype=images.dtype)
    return images * (1 + EPSILON * noise.to(images.device))


def _compare(model: Model, stand_in: nn.Module, reference: _Reference, channels_last: bool, path: str) -> Verdict:
    size, device = tuple(reference.probe.shape[-2:]), str(reference.probe.device)
    tolerance = (reference.output_tolerance, reference.gradient_tolerance)
    errors = []
    try:
        with channels_last_weights(stand_in, channels_last):
            for count in (1, 2):
                images = reference.probe[:count]
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                outputs, gradient = _differentiate(model, stand_in, images, reference.weights)
                errors.append((_outputs_error(outputs, [o[:count] for o in reference.outputs]),
                               relative_error(gradient, reference.gradient[:count])))
    except Exception as error:  # e.g. a network that flattens with .view refuses channels-last
        failed = (float("inf"), float("inf"))
        return Verdict(path, size, device, failed, failed, tolerance, f"{type(error).__name__}: {str(error)[:80]}")
    return Verdict(path, size, device, *errors, tolerance)


def _differentiate(model: Model, net: nn.Module, images: torch.Tensor, weights: list[torch.Tensor]
                   ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``net``'s floating outputs for ``images`` (normalized as ``model`` does) and the input gradient
    of their projection on ``weights`` (one per output, for a batch of 2), by plain autograd."""
    with frozen(net), torch.enable_grad():
        images = images.detach().clone().requires_grad_(True)
        leaves, _ = tree_flatten(run_network(net, model.normalize(images)))
        outputs = [o for o in leaves if isinstance(o, torch.Tensor) and o.is_floating_point()]
        if len(outputs) != len(weights) or any(o.shape[1:] != w.shape[1:] for o, w in zip(outputs, weights)):
            raise RuntimeError("its outputs differ in number or shape from the original's")
        total = sum((o.double() * w[:len(o)]).sum() for o, w in zip(outputs, weights))
        (gradient,) = torch.autograd.grad(total, images)
    return [o.detach() for o in outputs], gradient


def _outputs_error(values: list[torch.Tensor], references: list[torch.Tensor]) -> float:
    if len(values) != len(references) or any(v.shape != r.shape for v, r in zip(values, references)):
        return float("inf")
    return max(relative_error(v, r) for v, r in zip(values, references))
