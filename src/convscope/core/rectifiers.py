"""Backward rules for rectifiers: the plain gradient, deconvnet, guided backpropagation.

The rule must reach every rectifier however the model calls it — ``nn.ReLU``, ``nn.ReLU6``
and ``nn.Hardtanh``, one module object called several times, ``F.relu``/``torch.relu``/
``relu_``/``F.relu6``/``F.hardtanh`` — so it is applied at the function level by a
``TorchFunctionMode`` active only inside the ``with`` block, not by hooks on ``nn.ReLU``
modules (which miss ReLU6 networks such as the default model). The forward values are
bit-identical; only the backward changes:

* deconvnet (Zeiler & Fergus 2014): pass back only the positive part of the gradient;
* guided (Springenberg et al. 2015): positive gradient, and only where the input was in the
  rectifier's linear range (the native backward of the call, made positive in place).

Smooth activations (SiLU, GELU, ...) have no such rule: they are refused, never ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from convscope.errors import ConvscopeError

RULES = ("gradient", "deconvnet", "guided")


aten = torch.ops.aten


class _Rectify(torch.autograd.Function):
    """``clamp(x, low, high)`` forward; the backward of ``rule``.

    deconvnet: the positive part of the incoming gradient, ignoring the forward. guided: the
    native backward (zero outside the linear range), then its positive part taken in place —
    two passes over the gradient and one new tensor, as cheap as the plain backward allows.
    """

    @staticmethod
    def forward(ctx, x, low, high, rule):
        out = x.clamp(low, high)
        ctx.low, ctx.high, ctx.rule = low, high, rule
        if rule == "guided":
            ctx.save_for_backward(out)  # in the linear range exactly where the input is
        return out

    @staticmethod
    def backward(ctx, grad):
        if ctx.rule == "deconvnet":
            return grad.clamp_min(0), None, None, None
        (out,) = ctx.saved_tensors
        native = aten.threshold_backward(grad, out, ctx.low) if ctx.high is None \
            else aten.hardtanh_backward(grad, out, ctx.low, ctx.high)
        return native.clamp_min_(0), None, None, None


def _relu(x, inplace=False):
    return x, 0.0, None, inplace


def _hardtanh(x, min_val=-1.0, max_val=1.0, inplace=False):
    return x, min_val, max_val, inplace


def _relu6(x, inplace=False):
    return x, 0.0, 6.0, inplace


def _in_place(x):
    return x, 0.0, None, True


_RECTIFIERS = {
    F.relu: _relu, torch.relu: _relu, torch.Tensor.relu: _relu,
    F.relu_: _in_place, torch.relu_: _in_place, torch.Tensor.relu_: _in_place,
    F.relu6: _relu6, F.hardtanh: _hardtanh, F.hardtanh_: lambda x, *a: (*_hardtanh(x, *a)[:3], True),
}
_SMOOTH = {F.silu: "SiLU", F.gelu: "GELU", F.hardswish: "Hardswish", F.mish: "Mish", F.elu: "ELU",
           F.selu: "SELU", F.celu: "CELU", F.softplus: "Softplus", F.leaky_relu: "LeakyReLU"}


class RectifierRule(TorchFunctionMode):
    """Applies a backward rule to every rectifier call made inside the ``with`` block.

    Args:
        rule: ``"deconvnet"`` or ``"guided"``.
    """

    def __init__(self, rule: str) -> None:
        super().__init__()
        if rule not in ("deconvnet", "guided"):
            raise ConvscopeError(f"unknown rectifier rule {rule!r}; accepted: deconvnet, guided")
        self.rule = rule
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SMOOTH:
            raise ConvscopeError(f"the {self.rule} rule is defined for rectifiers (ReLU, ReLU6, Hardtanh); "
                                 f"this model uses {_SMOOTH[func]}, which has no such rule — use the plain "
                                 f"gradient or Grad-CAM")
        if func not in _RECTIFIERS:
            return func(*args, **kwargs)
        self.calls += 1
        x, low, high, inplace = _RECTIFIERS[func](*args, **kwargs)
        out = _Rectify.apply(x, low, high, self.rule)
        return x.copy_(out) if inplace else out


def rectifier_rule(rule: str) -> RectifierRule | None:
    """The context for ``rule``: None for the plain gradient, else a :class:`RectifierRule`."""
    if rule == "gradient":
        return None
    return RectifierRule(rule)
