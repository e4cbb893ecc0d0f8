"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) with Zennit's rules and
composites.

Rules act where the network calls a convolution or a linear layer — modules, reused modules and
functional calls alike, caught while the forward runs — and on clipped or smooth activations
(relevance passes through them unchanged). Everything else is left to autograd, because the
signal sent back between rule layers is relevance *per unit of value*, ``R / a``: in that form
the plain gradient of a sum splits relevance by contribution (residual connections), of an
average pool by share (Zennit's Norm rule), of a max pool to the winner, and of a ReLU passes it.
Batch norms are first folded into their convolutions (what Zennit calls canonizing). The
relevance of the first layer's input, the normalized image, is the map; its sum over the score
is reported as the conservation diagnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from convscope.core.fastpath import fast_model
from convscope.core.forward import score
from convscope.core.hooks import frozen
from convscope.core.objectives import Objective
from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.model import Model, as_model

STABILIZER = 1e-6


@dataclass(frozen=True)
class Rule:
    """One LRP rule: its name (``epsilon``, ``zplus``, ``alpha-beta``, ``gamma``, ``zbox``, ``flat``)
    and parameters (``epsilon``, ``gamma``, ``alpha``/``beta``; ``zbox`` takes the bounds from the model)."""

    name: str
    epsilon: float = STABILIZER
    gamma: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0


@dataclass(frozen=True)
class Composite:
    """Rules by place: the first layer, convolutions, linear layers (Zennit's composites)."""

    first: Rule | None
    conv: Rule
    linear: Rule


COMPOSITES = {
    "epsilon-gamma-box": Composite(Rule("zbox"), Rule("gamma"), Rule("epsilon")),
    "epsilon-plus": Composite(None, Rule("zplus"), Rule("epsilon")),
    "epsilon-plus-flat": Composite(Rule("flat"), Rule("zplus"), Rule("epsilon")),
    "epsilon-alpha2-beta1": Composite(None, Rule("alpha-beta"), Rule("epsilon")),
    "epsilon": Composite(None, Rule("epsilon"), Rule("epsilon")),
}


@dataclass
class Relevance:
    """LRP's result.

    Attributes:
        relevance: ``(B, C, H, W)`` relevance of each value of the normalized image (C: the
            network's channels).
        score: ``(B,)`` the explained score, from which relevance starts.
    """

    relevance: torch.Tensor
    score: torch.Tensor

    @property
    def conservation(self) -> torch.Tensor:
        """``(B,)`` summed input relevance over the score: 1 when nothing was absorbed (by biases,
        stabilizers, or rules such as gamma that do not conserve)."""
        return self.relevance.flatten(1).sum(1) / self.score


def lrp(model: Model | nn.Module, x: torch.Tensor, objective: Objective, *, composite: str = "epsilon-gamma-box"
        ) -> Relevance:
    """Relevance of each input value for ``objective`` (a class logit, a channel, ...).

    Args:
        x: ``(B, C, H, W)`` images in [0, 1].
        composite: one of :data:`COMPOSITES`.

    Returns:
        :class:`Relevance`; ``relevance`` has the shape of ``x``.
    """
    if composite not in COMPOSITES:
        raise unknown_choice("LRP composite", composite, COMPOSITES)
    model = as_model(model)
    x = x.detach().to(model.device)
    model = fast_model(model, objective.layers, x)
    normalized = model.normalize(x)
    low, high = (model.normalize(torch.full_like(x[:1, :, :1, :1], value)) for value in (0.0, 1.0))
    unscaled = dataclasses.replace(model, mean=(0.0,) * model.channels, std=(1.0,) * model.channels)
    mode = _Rules(COMPOSITES[composite], (low, high))
    with frozen(model.net), torch.enable_grad():
        seen = normalized.clone().requires_grad_(True)
        with mode:
            values = score(unscaled, seen, objective)
        if not mode.calls:
            raise ConvscopeError("LRP needs convolutions or linear layers to apply its rules to; this network "
                                 "calls none — use the gradient or occlusion")
        (relevance,) = torch.autograd.grad(values.sum(), seen)
    return Relevance(relevance.detach(), values.detach())


class _Rules(TorchFunctionMode):
    """Puts rule layers in place of convolution and linear calls, and pass-through activations in
    place of clipped and smooth ones, for one forward."""

    def __init__(self, composite: Composite, bounds: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        self.composite, self.bounds = composite, bounds
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LAYERS:
            call = _LAYERS[func](args, kwargs)
            kind = call.kind
            first = self.calls == 0
            self.calls += 1
            boxed = self.composite.first is not None and (self.composite.first.name != "zbox" or kind == "conv")
            rule = (self.composite.first if first and boxed else
                    self.composite.conv if kind == "conv" else self.composite.linear)
            weight, bias = args[1], (args[2] if len(args) > 2 else kwargs.get("bias"))
            return _RuleLayer.apply(args[0], weight, bias, call, rule, self.bounds, first)
        if func in _PASSED:
            rest, named = args[1:], {k: v for k, v in kwargs.items() if k != "inplace"}
            return _PassThrough.apply(args[0], lambda z: func(z, *rest, **named))
        return func(*args, **kwargs)


@dataclass(frozen=True)
class _Call:
    """One convolution or linear call: ``forward(a, w, b)``, and ``transpose(shape, w, g)``, the
    gradient w.r.t. an input of ``shape`` for output gradient ``g`` (no forward graph needed)."""

    kind: str
    forward: Callable
    transpose: Callable
    bias_shape: Callable


def _conv(args, kwargs) -> _Call:
    rest, named = args[3:], {k: v for k, v in kwargs.items() if k != "bias"}
    dims = args[0].dim() - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    grad = {1: torch.nn.grad.conv1d_input, 2: torch.nn.grad.conv2d_input, 3: torch.nn.grad.conv3d_input}[dims]
    options = dict(zip(("stride", "padding", "dilation", "groups"), rest)) | named
    forward = lambda a, w, b: conv(a, w, b, *rest, **named)  # noqa: E731
    if isinstance(options.get("padding", 0), str):  # "same"/"valid": through autograd
        transpose = _by_autograd(forward)
    else:
        transpose = lambda shape, w, g: grad(shape, w, g, **options)  # noqa: E731
    return _Call("conv", forward, transpose, lambda b, dim: b.view(1, -1, *[1] * (dim - 2)))


def _linear(args, kwargs) -> _Call:
    return _Call("linear", lambda a, w, b: F.linear(a, w, b), lambda shape, w, g: g @ w, lambda b, dim: b)


def _by_autograd(forward: Callable) -> Callable:
    def transpose(shape, w, g):
        with torch.enable_grad():
            probe = torch.zeros(shape, dtype=g.dtype, device=g.device, requires_grad=True)
            return torch.autograd.grad(forward(probe, w, None), probe, g)[0]
    return transpose


_LAYERS = {F.conv1d: _conv, F.conv2d: _conv, F.conv3d: _conv, F.linear: _linear}
#: Clipped and smooth activations, run out of place: relevance passes them unchanged (Zennit's Pass).
_PASSED = {F.hardtanh, F.relu6, F.silu, F.gelu, F.hardswish, F.mish, F.elu}


def _stabilized(values: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``values`` moved away from 0 by ``epsilon`` with their sign (+ for 0), as Zennit does."""
    return values + ((values == 0).to(values) + values.sign()) * epsilon


class _PassThrough(torch.autograd.Function):
    """``a = f(z)``; relevance passes unchanged, so per unit of value ``g_z = g_a f(z) / z``."""

    @staticmethod
    def forward(ctx, z, fn):
        out = fn(z)
        ctx.save_for_backward(z, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        z, out = ctx.saved_tensors
        ratio = torch.where(z == 0, torch.zeros_like(z), out / torch.where(z == 0, torch.ones_like(z), z))
        return grad * ratio, None


class _RuleLayer(torch.autograd.Function):
    """A convolution or linear layer whose backward applies an LRP rule to ``R_z = z * g_z`` and
    sends back ``R_a / a``; the first layer sends back ``R_a`` itself, which reaches the
    normalized image through what came before (padding, resizing: linear, so the sum is kept).

    The rule's modified forwards run without a graph and their gradients are transposed
    convolutions; a term whose input is zero everywhere (the negative part of a ReLU's output)
    is only its bias, and passes nothing back."""

    @staticmethod
    def forward(ctx, a, weight, bias, call, rule, bounds, first):
        z = call.forward(a, weight, bias)
        ctx.save_for_backward(a, weight, bias, z.detach().clone())  # a copy: an in-place activation may follow
        ctx.call, ctx.rule, ctx.bounds, ctx.first = call, rule, bounds, first
        return z

    @staticmethod
    def backward(ctx, grad):
        a, weight, bias, z = ctx.saved_tensors
        call, relevance = ctx.call, z * grad
        terms = _TERMS[ctx.rule.name](ctx.rule, a, weight, bias, z, ctx.bounds)
        signs = {1: bool((a > 0).any()), -1: bool((a < 0).any()), 0: True}
        live = [signs[term.sign] for term in terms]
        outputs = [z if ctx.rule.name == "epsilon" else
                   call.forward(term.input, term.weight, term.bias) if alive else
                   _bias_only(call, term.bias, z) for term, alive in zip(terms, live)]
        shares = [term.share(relevance, outputs) for term in terms]
        grads = [call.transpose(term.input.shape, term.weight, share) if alive else None
                 for term, share, alive in zip(terms, shares, live)]
        if ctx.first:
            return sum(term.reduce(term.input, g) for term, g in zip(terms, grads) if g is not None), *(None,) * 6
        per_value = sum(term.per_value(a, g) for term, g in zip(terms, grads) if g is not None)
        return per_value, None, None, None, None, None, None


def _bias_only(call: _Call, bias: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A layer's output for an input of zeros: its bias everywhere."""
    if bias is None:
        return torch.zeros_like(like)
    return call.bias_shape(bias, like.dim()).expand_as(like)


@dataclass
class _Term:
    """One modified forward of a rule: ``op(input, weight, bias)``; ``share(R, outputs)`` is the
    gradient sent into it, and its relevance is ``coefficient * input * gradient``."""

    input: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    share: Callable
    coefficient: float = 1.0
    sign: int = 0  # which inputs the term reads: +1 positive, -1 negative, 0 all

    def reduce(self, inp: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return self.coefficient * inp * grad

    def per_value(self, a: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """This term's ``R_a / a``: the gradient where the term reads ``a`` itself."""
        mask = 1.0 if self.sign == 0 else (a > 0 if self.sign > 0 else a < 0).to(a)
        return self.coefficient * mask * grad


def _plus(t):
    return None if t is None else t.clamp(min=0)


def _minus(t):
    return None if t is None else t.clamp(max=0)


def _group(first: int, count: int, epsilon: float, mask=None) -> Callable:
    """The share of terms ``first .. first+count``: ``R / stabilized(sum of their outputs)``."""
    def share(relevance, outputs):
        ratio = relevance / _stabilized(sum(outputs[first:first + count]), epsilon)
        return ratio if mask is None else ratio * mask
    return share


def _epsilon(rule, a, w, b, z, bounds):
    return [_Term(a, w, b, _group(0, 1, rule.epsilon))]


def _alpha_beta(rule, a, w, b, z, bounds, alpha=None, beta=None):
    alpha, beta = (rule.alpha, rule.beta) if alpha is None else (alpha, beta)
    positive = _group(0, 2, rule.epsilon)
    terms = [_Term(_plus(a), _plus(w), _plus(b), positive, alpha, 1),
             _Term(_minus(a), _minus(w), None, positive, alpha, -1)]
    if beta:
        negative = _group(2, 2, rule.epsilon)
        terms += [_Term(_plus(a), _minus(w), _minus(b), negative, -beta, 1),
                  _Term(_minus(a), _plus(w), None, negative, -beta, -1)]
    return terms


def _gamma(rule, a, w, b, z, bounds):
    g = rule.gamma
    up, down = (z > 0).to(z), (z < 0).to(z)
    raised = (w + g * _plus(w), None if b is None else b + g * _plus(b))
    lowered = (w + g * _minus(w), None if b is None else b + g * _minus(b))
    return [_Term(_plus(a), raised[0], raised[1], _group(0, 2, rule.epsilon, up), 1.0, 1),
            _Term(_minus(a), lowered[0], None, _group(0, 2, rule.epsilon, up), 1.0, -1),
            _Term(_plus(a), lowered[0], lowered[1], _group(2, 2, rule.epsilon, down), 1.0, 1),
            _Term(_minus(a), raised[0], None, _group(2, 2, rule.epsilon, down), 1.0, -1)]


def _zbox(rule, a, w, b, z, bounds):
    low, high = (bound.to(a).expand_as(a) for bound in bounds)
    share = _group_box(rule.epsilon)
    return [_Term(a, w, b, share), _Term(low, _plus(w), _plus(b), share, -1.0),
            _Term(high, _minus(w), _minus(b), share, -1.0)]


def _group_box(epsilon: float) -> Callable:
    def share(relevance, outputs):
        return relevance / _stabilized(outputs[0] - outputs[1] - outputs[2], epsilon)
    return share


def _flat(rule, a, w, b, z, bounds):
    term = _Term(torch.ones_like(a), torch.ones_like(w), None, _group(0, 1, rule.epsilon))
    term.reduce = lambda inp, grad: grad
    return [term]


_TERMS = {"epsilon": _epsilon, "zplus": lambda r, a, w, b, z, bo: _alpha_beta(r, a, w, b, z, bo, 1.0, 0.0),
          "alpha-beta": _alpha_beta, "gamma": _gamma, "zbox": _zbox, "flat": _flat}
