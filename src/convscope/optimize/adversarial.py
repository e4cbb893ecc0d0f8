"""Adversarial examples: small changes of the pixels that change the model's answer.

Each attack follows the gradient of a class score w.r.t. the image (the same
:func:`~convscope.attribute.core.attribute` that saliency reads), under a budget:

* ``fgsm`` — one step of ``eps * sign(gradient)`` (Goodfellow, Shlens, Szegedy 2015);
* ``pgd`` — many such steps, projected back into the L-inf or L2 ball (Madry et al. 2018);
* ``cw`` — the smallest L2 change that reaches a target class with a margin (Carlini & Wagner 2017);
* ``lbfgs`` — Szegedy et al. 2014: minimize ``c * |r|^2 + loss(x + r, target)`` by L-BFGS in
  the box [0, 1], with ``c`` searched so that the change is as small as possible;
* ``deepfool`` — steps to the nearest linearized decision boundary (Moosavi-Dezfooli et al. 2016).

Images are 8-bit once saved, and rounding kills many adversarial images. So every attack starts
from the image rounded to 1/255 steps, keeps L-inf iterates on that grid (step sizes and budgets
are whole 1/255 steps), rounds continuous results, and reports success on the rounded images:
what is reported is what a saved PNG does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from convscope.attribute.core import attribute
from convscope.attribute.targets import class_indices
from convscope.core.hooks import frozen
from convscope.core.objectives import OUTPUT, Objective, class_logit
from convscope.core.legend import Panel, Scale, row
from convscope.core.render import Picture, picture
from convscope.errors import ConvscopeError, unknown_choice
from convscope.inspect.predictions import classify, probabilities
from convscope.models.model import Model, as_model
from convscope.optimize.render import FrameCallback

METHODS = ("fgsm", "pgd", "cw", "lbfgs", "deepfool")
NORMS = ("linf", "l2")
LEVELS = 255


@dataclass
class Attack:
    """The result of an attack on a batch.

    Attributes:
        method: the attack's name.
        original: ``(B, C, H, W)`` the attacked images, on the 1/255 grid.
        adversarial: ``(B, C, H, W)`` the adversarial images, on the 1/255 grid, in [0, 1].
        labels: ``(B,)`` the model's class for each original.
        target: ``(B,)`` the class aimed at, or None for an untargeted attack.
        steps: gradient evaluations used.
        model: the attacked model.
        success: ``(B,)`` the rounded adversarial image is classified as the target (targeted)
            or differently from the original's class (untargeted).
    """

    method: str
    original: torch.Tensor
    adversarial: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor | None
    steps: int
    model: Model = field(repr=False, compare=False)

    @cached_property
    def success(self) -> torch.Tensor:
        """Computed on first use (one forward pass), so timing an attack times the attack alone."""
        return _fooled(self.model, self.adversarial, self.labels, self.target)

    @property
    def perturbation(self) -> torch.Tensor:
        """``(B, C, H, W)`` adversarial minus original."""
        return self.adversarial - self.original

    @property
    def linf(self) -> torch.Tensor:
        """``(B,)`` largest change of any pixel value."""
        return self.perturbation.flatten(1).abs().amax(1)

    @property
    def l2(self) -> torch.Tensor:
        """``(B,)`` Euclidean norm of the change."""
        return self.perturbation.flatten(1).norm(dim=1)

    def summary(self, model: Model | nn.Module, top: int = 3) -> list[dict]:
        """Per image: top classes before and after, norms (also in 1/255 steps), success, steps."""
        model = as_model(model)
        before, after = (classify(model, images.to(model.device), top=top) for images in (self.original,
                                                                                         self.adversarial))
        return [{"method": self.method, "target": None if self.target is None else model.label(int(self.target[i])),
                 "original": [p.as_dict() for p in before[i]], "adversarial": [p.as_dict() for p in after[i]],
                 "linf": float(self.linf[i]), "linf_255": round(float(self.linf[i]) * LEVELS),
                 "l2": float(self.l2[i]), "success": bool(self.success[i]), "steps": self.steps}
                for i in range(len(self.original))]

    def picture(self, model: Model | nn.Module, index: int = 0) -> Picture:
        """Original | adversarial | the change magnified (gray is no change), each labelled with what
        it is and the model's top class for it."""
        info = self.summary(model, top=1)[index]
        change = self.perturbation[index]
        top = float(change.abs().max())
        magnified = (0.5 + 0.5 * change / max(top, 1e-12)).clamp(0, 1)
        first, then = info["original"][0], info["adversarial"][0]
        times = f"x{0.5 / top:.0f}" if top else ""
        panels = [Panel(self.original[index], f"original*: {first['label']} {100 * first['probability']:.1f}%"),
                  Panel(self.adversarial[index], f"adversarial: {then['label']} {100 * then['probability']:.1f}%"),
                  Panel(magnified, f"the change, magnified {times}" if top else "no change",
                        Scale(-top * LEVELS, top * LEVELS, "gray", "of 255", clipped=False) if top else None)]
        caption = (f"{'fooled' if info['success'] else 'not fooled'}: {first['label']} "
                   f"{100 * first['probability']:.1f}% -> {then['label']} {100 * then['probability']:.1f}% | "
                   + (f"change magnified {times}: " if top else "no change: ")
                   + f"L-inf {info['linf_255']}/255, L2 {info['l2']:.2f}, {self.method}, {self.steps} steps "
                   "(*the original rounded to whole 1/255 steps, as images are stored)")
        return picture(row(panels), caption, original=first["label"], adversarial=then["label"],
                       **{k: info[k] for k in ("linf", "l2", "success")})


#: Images per forward/backward. On the 2-core CPU a batch of 64 costs 2.7x more per image than
#: batches of 8 (benchmarks/adversarial.py); GPUs want large batches.
CPU_CHUNK, GPU_CHUNK = 8, 256


def _in_chunks(method):
    """Runs an attack on chunks of the batch sized for the device (``chunk_size=`` overrides)
    and joins the results; the images of a batch do not interact."""
    @functools.wraps(method)
    def run(model: Model | nn.Module, x: torch.Tensor, *, target=None, chunk_size: int | None = None,
            **options) -> Attack:
        model = as_model(model)
        size = chunk_size or (GPU_CHUNK if model.device.type == "cuda" else CPU_CHUNK)
        if len(x) <= size:
            return method(model, x, target=target, **options)
        per_image = isinstance(target, torch.Tensor) and target.dim() == 1 and len(target) == len(x)
        targets = target.split(size) if per_image else [target] * -(-len(x) // size)
        parts = [method(model, chunk, target=goal, **options) for chunk, goal in zip(x.split(size), targets)]
        return Attack(parts[0].method, *(torch.cat([getattr(p, name) for p in parts])
                                         for name in ("original", "adversarial", "labels")),
                      None if parts[0].target is None else torch.cat([p.target for p in parts]),
                      max(p.steps for p in parts), model)
    return run


def attack(model: Model | nn.Module, x: torch.Tensor, method: str = "pgd", *, target=None,
           **options) -> Attack:
    """Runs ``method`` (one of :data:`METHODS`) on ``x`` ``(B, C, H, W)`` in [0, 1].

    Args:
        target: a class (name or index) or ``(B,)`` classes to reach; None for untargeted
            (``cw`` and ``lbfgs`` need one).
        options: the method's own settings (see each function).
    """
    if method not in METHODS:
        raise unknown_choice("attack", method, METHODS)
    return {"fgsm": fgsm, "pgd": pgd, "cw": carlini_wagner, "lbfgs": lbfgs, "deepfool": deepfool}[method](
        model, x, target=target, **options)


def fgsm(model: Model | nn.Module, x: torch.Tensor, *, eps: float = 2 / LEVELS, target=None) -> Attack:
    """Fast gradient sign: ``x + eps * sign(grad)`` of the loss (away from the model's class,
    or toward ``target``); ``eps`` is rounded down to whole 1/255 steps."""
    return pgd(model, x, eps=eps, alpha=eps, steps=1, target=target, name="fgsm")


@_in_chunks
def pgd(model: Model | nn.Module, x: torch.Tensor, *, eps: float = 2 / LEVELS, norm: str = "linf",
        alpha: float | None = None, steps: int = 10, target=None, random_start: bool = False, seed: int = 0,
        name: str = "pgd", callback: FrameCallback | None = None) -> Attack:
    """Projected gradient descent on the cross-entropy (Madry et al.).

    Args:
        eps: the budget: L-inf (rounded down to whole 1/255 steps) or L2 radius.
        norm: ``linf`` (sign steps) or ``l2`` (steps along the normalized gradient).
        alpha: step size (default: ``eps / 4``, at least one 1/255 step, for L-inf; ``eps / 4`` for L2).
        random_start: start at a uniformly random point of the ball (seeded).
        callback: receives ``(step, adversarial images)`` after each step.

    Returns:
        An :class:`Attack`; L-inf results are exactly on the 1/255 grid within the budget.
    """
    if norm not in NORMS:
        raise unknown_choice("norm", norm, NORMS)
    if steps < 1 or eps <= 0:
        raise ConvscopeError(f"an attack needs steps >= 1 and eps > 0, got steps={steps}, eps={eps}")
    model = as_model(model)
    setup = _setup(model, x, target, eager=random_start)
    if norm == "linf":
        eps = math.floor(eps * LEVELS + 1e-6) / LEVELS
        if eps <= 0:
            raise ConvscopeError("eps must be at least 1/255 for an L-inf attack on 8-bit images")
        alpha = max(1, round((alpha or eps / 4) * LEVELS)) / LEVELS
    else:
        alpha = alpha or eps / 4
    start = setup.original.to(model.device)  # the gradients come back on the model's device
    adversarial = _project(start + _random_point(start, eps, norm, seed), start, eps, norm) if random_start else start
    for number in range(steps):
        grad = attribute(model, adversarial, setup.objective)
        step = alpha * (grad.sign() if norm == "linf" else _unit(grad))
        adversarial = _project(adversarial + step, start, eps, norm)
        if callback:
            callback(number + 1, adversarial.detach().cpu())
    if norm == "l2":
        adversarial = _round_inside(adversarial, setup.original, eps)
    return setup.result(model, name, adversarial, steps)


@_in_chunks
def carlini_wagner(model: Model | nn.Module, x: torch.Tensor, *, target, kappa: float = 1.0,
                   steps: int = 100, lr: float = 0.01, c: float = 1.0, searches: int = 5,
                   callback: FrameCallback | None = None) -> Attack:
    """Carlini & Wagner's L2 attack toward ``target``: minimizes ``|r|^2 + c * max(max_other
    logit - target logit, -kappa)`` in the tanh space (which keeps pixels in [0, 1]); ``c`` is
    bisected over ``searches`` rounds per image for the smallest change that still succeeds
    after rounding; ``callback`` receives ``(steps so far, best images)`` after each round."""
    return _minimal(model, x, target, steps, searches, c, "cw",
                    lambda logits, goal: _margin(logits, goal, kappa), optimizer="adam", lr=lr, callback=callback)


@_in_chunks
def lbfgs(model: Model | nn.Module, x: torch.Tensor, *, target, steps: int = 50, c: float = 1.0,
          searches: int = 5) -> Attack:
    """Szegedy et al.'s box-constrained attack: minimizes ``|r|^2 + c * cross-entropy(x + r,
    target)`` by L-BFGS (the box through the tanh change of variables), bisecting ``c``."""
    def loss(logits, goal):
        return -logits.log_softmax(-1).gather(1, goal[:, None])[:, 0]
    return _minimal(model, x, target, steps, searches, c, "lbfgs", loss, optimizer="lbfgs", lr=1.0)


@_in_chunks
def deepfool(model: Model | nn.Module, x: torch.Tensor, *, target=None, steps: int = 50, overshoot: float = 0.02,
             candidates: int = 10, callback: FrameCallback | None = None) -> Attack:
    """DeepFool (untargeted): repeatedly steps to the nearest boundary of the linearized model
    among the ``candidates`` classes with the highest logits (all others, for a model with fewer
    classes), overshooting by ``overshoot``; ``callback`` receives ``(step, current images)``
    before each step."""
    if target is not None:
        raise ConvscopeError("deepfool is untargeted: leave out --target, or use pgd, cw or lbfgs")
    if steps < 1:
        raise ConvscopeError(f"deepfool needs steps >= 1, got {steps}")
    model = as_model(model)
    setup = _setup(model, x, None)
    labels = setup.labels
    with torch.no_grad():
        scores = probabilities(model, setup.original)
        rivals = scores.topk(min(candidates + 1, scores.shape[-1]), -1).indices[:, 1:]
    total = torch.zeros_like(setup.original)
    used = 0
    for used in range(1, steps + 1):
        current = (setup.original + (1 + overshoot) * total).clamp(0, 1)
        if callback:
            callback(used - 1, current)
        with torch.no_grad():
            fooled = probabilities(model, current).argmax(-1) != labels
        if bool(fooled.all()):
            break
        own = attribute(model, current, class_logit(labels))
        with torch.no_grad():
            logits = model(current.to(model.device)).cpu()
        best = torch.full((len(x),), float("inf"))
        step = torch.zeros_like(total)
        for k in range(rivals.shape[1]):
            other = rivals[:, k]
            w = attribute(model, current, class_logit(other)) - own
            f = (logits.gather(1, other[:, None]) - logits.gather(1, labels[:, None]))[:, 0]
            norm = w.flatten(1).norm(dim=1).cpu().clamp_min(1e-12)
            distance = f.abs() / norm
            closer = (distance < best) & ~fooled
            best = torch.where(closer, distance, best)
            scale = ((f.abs() + 1e-4) / norm**2).view(-1, 1, 1, 1)
            step = torch.where(closer.view(-1, 1, 1, 1), scale * w.cpu(), step)
        total = total + step
    adversarial = _repair(model, setup, (setup.original + (1 + overshoot) * total).clamp(0, 1))
    return setup.result(model, "deepfool", adversarial, used)


# -- shared parts -----------------------------------------------------------------------------


@dataclass
class _Setup:
    original: torch.Tensor
    labels: torch.Tensor | None
    target: torch.Tensor | None

    @property
    def objective(self) -> Objective:
        """The log-probability of the target (to raise) or minus that of the model's class. When
        the model's class is not known yet, it is read from the same forward pass."""
        def score(acts):
            logits = acts[OUTPUT]
            if self.labels is None:
                self.labels = logits.detach().argmax(-1).cpu()
            goal = self.target if self.target is not None else self.labels
            picked = logits.log_softmax(-1).gather(1, goal.to(logits.device)[:, None])[:, 0]
            return picked if self.target is not None else -picked
        return Objective(score, (OUTPUT,), "adversarial loss")

    def fooled(self, model: Model, images: torch.Tensor) -> torch.Tensor:
        return _fooled(model, images, self.labels, self.target)

    def result(self, model: Model, method: str, adversarial: torch.Tensor, steps: int) -> Attack:
        return Attack(method, self.original, quantize(adversarial.detach().cpu()), self.labels, self.target, steps,
                      model)


def _setup(model: Model, x: torch.Tensor, target, *, eager: bool = True) -> _Setup:
    """The attacked images on the grid, the target, and the model's classes (or None when not
    ``eager``: the first gradient step reads them)."""
    original = quantize(x.detach().cpu().float())
    labels = None
    if eager:
        with torch.no_grad(), frozen(model.net):
            labels = class_indices(model, original.to(model.device), None).cpu()
    goal = None if target is None else class_indices(model, original, target).cpu()
    return _Setup(original, labels, goal)


def _fooled(model: Model, images: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    with torch.no_grad():
        predicted = probabilities(model, images.to(model.device)).argmax(-1).cpu()
    return predicted == target if target is not None else predicted != labels


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Rounds ``x`` in [0, 1] to the 8-bit grid (what saving a PNG does)."""
    return (x.clamp(0, 1) * LEVELS).round() / LEVELS


def _project(x: torch.Tensor, start: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    delta = x - start
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        size = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = delta * (eps / size).clamp(max=1)
    return (start + delta).clamp(0, 1)


def _unit(grad: torch.Tensor) -> torch.Tensor:
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


def _random_point(x: torch.Tensor, eps: float, norm: str, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if norm == "linf":
        steps = torch.randint(-round(eps * LEVELS), round(eps * LEVELS) + 1, x.shape, generator=generator)
        return (steps.float() / LEVELS).to(x.device)  # on the grid
    direction = _unit(torch.randn(x.shape, generator=generator))
    return (direction * eps * torch.rand(len(x), 1, 1, 1, generator=generator)).to(x.device)


def _round_inside(adversarial: torch.Tensor, start: torch.Tensor, eps: float) -> torch.Tensor:
    """Rounds a continuous result to the grid; with an L2 budget ``eps``, rounds toward the
    original where needed so that the rounded change stays within it."""
    rounded = quantize(adversarial.cpu())
    toward = start + torch.trunc((adversarial.cpu() - start) * LEVELS) / LEVELS
    over = (rounded - start).flatten(1).norm(dim=1) > eps
    return torch.where(over.view(-1, 1, 1, 1), toward, rounded)


def _repair(model: Model, setup: _Setup, continuous: torch.Tensor, limit: float = 32 / LEVELS) -> torch.Tensor:
    """Rounds ``continuous`` to the grid; where rounding undid the attack (a minimal change is
    often below half a grid step), scales the change up by 1.25x at a time until the rounded
    image fools the model again or the change would exceed ``limit`` in L-inf."""
    change = continuous.cpu() - setup.original
    size = change.flatten(1).abs().amax(1)
    adversarial = quantize(setup.original + change)
    factor = 1.0
    while True:
        factor *= 1.25
        failed = ~setup.fooled(model, adversarial) & (size * factor <= limit)
        if not bool(failed.any()):
            return adversarial
        bigger = quantize(setup.original + factor * change)
        adversarial = torch.where(failed.view(-1, 1, 1, 1), bigger, adversarial)


def _margin(logits: torch.Tensor, goal: torch.Tensor, kappa: float) -> torch.Tensor:
    own = logits.gather(1, goal[:, None])[:, 0]
    others = logits.scatter(1, goal[:, None], float("-inf")).amax(1)
    return (others - own).clamp_min(-kappa)


def _minimal(model, x, target, steps: int, searches: int, c: float, name: str, loss_fn, *, optimizer: str,
             lr: float, callback: FrameCallback | None = None) -> Attack:
    """The shared loop of ``cw`` and ``lbfgs``: per-image bisection of ``c`` around an inner
    minimization of ``|r|^2 + c * loss`` in the tanh space; keeps the smallest rounded success."""
    if target is None:
        raise ConvscopeError(f"{name} is a targeted attack: give a target class")
    if steps < 1 or searches < 1:
        raise ConvscopeError(f"{name} needs steps >= 1 and searches >= 1, got {steps} and {searches}")
    model = as_model(model)
    setup = _setup(model, x, target)
    best = setup.original.clone()
    best_size = torch.full((len(x),), float("inf"))
    low, high = torch.zeros(len(x)), torch.full((len(x),), float("inf"))
    weight = torch.full((len(x),), c)
    with frozen(model.net):
        for round_ in range(searches):
            candidate = _inner(model, setup, weight, steps, loss_fn, optimizer, lr)
            candidate = _repair(model, setup, candidate)
            fooled = setup.fooled(model, candidate)
            size = (candidate - setup.original).flatten(1).norm(dim=1)
            better = fooled & (size < best_size)
            best = torch.where(better.view(-1, 1, 1, 1), candidate, best)
            best_size = torch.where(better, size, best_size)
            high = torch.where(fooled, torch.minimum(high, weight), high)
            low = torch.where(fooled, low, torch.maximum(low, weight))
            weight = torch.where(high.isinf(), weight * 10, (low + high) / 2)
            if callback:
                callback(steps * (round_ + 1), best)
    return setup.result(model, name, best, steps * searches)


def _inner(model: Model, setup: _Setup, weight: torch.Tensor, steps: int, loss_fn, optimizer: str, lr: float
           ) -> torch.Tensor:
    start = setup.original.to(model.device)
    w = torch.atanh((start * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
    goal, weight = setup.target.to(model.device), weight.to(model.device)
    opt = (torch.optim.Adam([w], lr=lr) if optimizer == "adam"
           else torch.optim.LBFGS([w], lr=lr, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"))

    def closure():
        opt.zero_grad()
        image = (torch.tanh(w) + 1) / 2
        loss = ((image - start).flatten(1).pow(2).sum(1) + weight * loss_fn(model(image), goal)).sum()
        loss.backward()
        return loss
    for _ in range(steps if optimizer == "adam" else 1):
        opt.step(closure)
    with torch.no_grad():
        return ((torch.tanh(w) + 1) / 2).cpu()
