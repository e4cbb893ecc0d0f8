"""Backward rules for rectifiers: the plain gradient, deconvnet, guided backpropagation.

The rule must reach every rectifier however the model calls it — ``nn.ReLU``, ``nn.ReLU6``
and ``nn.Hardtanh``, one module object called several times, ``F.relu``/``torch.relu``/
``relu_``/``F.relu6``/``F.hardtanh``/``F.threshold`` — so it is applied to the autograd graph,
not to modules (hooks on ``nn.ReLU`` modules miss ReLU6 networks such as the default model):
after the forward pass, each rectifier's backward node behind the output gets a hook that
rewrites what it passes back. Whoever called the rectifier, its node is in the graph. The
forward runs untouched, at full speed; only the backward changes:

* deconvnet (Zeiler & Fergus 2014): pass back only the positive part of the gradient,
  ignoring the forward;
* guided (Springenberg et al. 2015): the native backward (zero outside the rectifier's
  linear range), made positive in place.

Smooth activations (SiLU, GELU, ...) have no such rule: a graph holding one is refused, never
ignored; so is a graph with no rectifier at all, where the rule would change nothing. The hooks belong to the graph and go with it; the model is not touched.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from convscope.errors import ConvscopeError

RULES = ("gradient", "deconvnet", "guided")

#: Backward nodes of rectifiers, by class name without the trailing version number.
_RECTIFIERS = frozenset({"ReluBackward", "HardtanhBackward", "ThresholdBackward"})
_SMOOTH = {"SiluBackward": "SiLU", "GeluBackward": "GELU", "HardswishBackward": "Hardswish",
           "MishBackward": "Mish", "EluBackward": "ELU or SELU", "CeluBackward": "CELU",
           "SoftplusBackward": "Softplus", "LeakyReluBackward": "LeakyReLU"}


def apply_rule(output: torch.Tensor, rule: str) -> int:
    """Makes every rectifier behind ``output`` pass gradients back by ``rule``, for the next
    backward pass through this graph.

    Args:
        output: a tensor computed (with autograd) from the input, e.g. the summed scores.
        rule: ``gradient`` (no change), ``deconvnet`` or ``guided``.

    Returns:
        The number of rectifier calls rewritten.
    """
    check_rule(rule)
    if rule == "gradient":
        return 0
    hook = _deconvnet if rule == "deconvnet" else _guided
    count = 0
    for node in _nodes(output.grad_fn):
        kind = type(node).__name__.rstrip("0123456789")
        if kind in _SMOOTH:
            raise ConvscopeError(f"the {rule} rule is defined for rectifiers (ReLU, ReLU6, Hardtanh); this model "
                                 f"uses {_SMOOTH[kind]}, which has no such rule — use the plain gradient or Grad-CAM")
        if kind in _RECTIFIERS:
            node.register_hook(hook)
            count += 1
    if not count:
        raise ConvscopeError(f"the {rule} rule rewrites rectifiers (ReLU, ReLU6, Hardtanh), and this target's "
                             "gradient passes none (an activation written as arithmetic, such as CLIP's QuickGELU, "
                             "is not one), so it would be the plain gradient — use the plain gradient or Grad-CAM")
    return count


def check_rule(rule: str) -> None:
    """A ConvscopeError naming the accepted rules unless ``rule`` is one of them."""
    if rule not in RULES:
        raise ConvscopeError(f"unknown gradient rule {rule!r}; accepted: {', '.join(RULES)}")


def _nodes(root) -> Iterator:
    """Every node of the autograd graph that ``root`` reaches, once each."""
    seen, stack = set(), [] if root is None else [root]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        stack.extend(parent for parent, _ in node.next_functions if parent is not None)


def _deconvnet(grad_inputs: tuple, grad_outputs: tuple) -> tuple:
    """The positive part of the incoming gradient, wherever the rectifier's input was (written over
    the native result, which has its shape and saves a new buffer)."""
    return tuple(None if g is None else torch.clamp_min(grad_outputs[0], 0, out=g) for g in grad_inputs)


def _guided(grad_inputs: tuple, grad_outputs: tuple) -> tuple:
    """The native gradient (zero outside the linear range), made positive in place."""
    return tuple(None if g is None else g.clamp_min_(0) for g in grad_inputs)
