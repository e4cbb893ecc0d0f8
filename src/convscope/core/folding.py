"""Batch norms and zero pads folded into convolutions: the same function, fewer layers to run.

In eval mode a ``BatchNorm2d`` is a per-channel affine map ``a * v + b`` with
``a = weight / sqrt(running_var + eps)`` and ``b = bias - a * running_mean``. When its input is
exactly the output of a ``Conv2d`` with weights ``W`` and bias ``c``, the pair is one convolution
with weights ``a * W`` and bias ``a * c + b``, whatever the padding. A symmetric zero pad
(``ZeroPad2d``, or ``ConstantPad2d`` with 0) right before a zero-padding convolution is that
convolution's own padding, without a padded copy of the input (TensorFlow-ported networks such
as the default model pad this way inside their convolutions). Attribution and optimization run
the network forward and backward many times; on the default model both folds make that 1.3x
faster (forward+backward to the input, batch 4, 2-core CPU; batch norms alone: 1.24x). The folded
network's values differ from the original's by float rounding only (logits within 1e-5;
gradients as close to a float64 reference as the original's own).

The folded network is a copy: the user's network is never touched. It is made once per network
and rebuilt when a parameter or buffer changes (its storage or its in-place version), and used
only where it computes the same values:

* a batch norm is folded when it is a plain ``nn.BatchNorm2d`` with running statistics, every
  one of its calls takes the output of one and the same convolution, and that convolution runs
  exactly as often (so no call of it feeds anything else first); a pad likewise, before a
  convolution, or as a convolution's own child module (which its ``forward`` calls);
* the copy serves only once it proved itself on the host where it runs: its output and its input
  gradient against the original's in float64 (:mod:`convscope.core.selfcheck`; a convolution
  whose output is read elsewhere too, or one that transforms its weights in ``forward``, fails
  this, and so does a network that amplifies the rounding of the merged weights); the choice is
  made in :mod:`convscope.core.fastpath`;
* a network with hooks of the user's on it runs as it is (they would fire in the copy, on
  folded values, or not at all for a removed batch norm);
* a method that reads a folded convolution's own output (before its batch norm) or a folded
  pad's runs on the original network; the batch norm's output is there in the copy, under its
  own name.
"""

from __future__ import annotations

import copy
import weakref
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from convscope.core.hooks import frozen, trace_calls
from convscope.core.selfcheck import signature
from convscope.models.model import Model

@dataclass
class Folded:
    signature: tuple
    net: nn.Module | None           # None: nothing to fold, or the copy did not compute the same
    changed: frozenset[str]         # layers whose output differs in the copy: folded convolutions and pads


_FOLDED: weakref.WeakKeyDictionary[nn.Module, Folded] = weakref.WeakKeyDictionary()
_COPIES: weakref.WeakKeyDictionary[nn.Module, weakref.ref[nn.Module]] = weakref.WeakKeyDictionary()


def folded_copy(model: Model, x: torch.Tensor) -> Folded | None:
    """``model``'s network with its batch norms and pads folded, made once per network state.

    Args:
        model: the model a method is about to run many times.
        x: ``(B, C, H, W)`` pixels in [0, 1] like the method's; one forward of the first image shows
            which layers fold.

    Returns:
        The copy and the layers whose output it changes (``net`` None: nothing to fold, or the
        network cannot be copied); None when the network has the user's hooks, is a copy itself,
        or refuses every probe.
    """
    if model.net in _COPIES or _hooked(model.net):
        return None
    state = signature(model.net)
    folded = _FOLDED.get(model.net)
    if folded is None or folded.signature != state:
        folded = _fold_checked(model, x, state)
        if folded is None:
            return None
        _FOLDED[model.net] = folded
    return folded


def original_of(net: nn.Module) -> nn.Module:
    """The user's network of a folded copy; ``net`` itself otherwise."""
    original = _COPIES.get(net)
    return net if original is None else original()


def _fold_checked(model: Model, x: torch.Tensor, state: tuple) -> Folded | None:
    """Folds, traced on the first image shrunk to the model's input size when larger, so that the
    trace (one forward keeping every layer's input and output) costs what one ordinary image
    does, not what a 2048-pixel DeepDream does; on the image itself when the network refuses the
    smaller size (a fixed-size head). A smaller image that the network refuses (below its minimum
    size, or not its fixed size) is traced at the input size instead. None when every probe is
    refused: the method then runs the original network and reports the input's fault itself."""
    image = x[:1].detach().to(model.device)
    larger = image.shape[-2] * image.shape[-1] > model.input_size[0] * model.input_size[1]
    with torch.inference_mode(False):  # the copy's tensors must serve autograd later
        for probe in [model.prepare(image), image] if larger else [image, model.prepare(image)]:
            try:
                return Folded(state, *_fold(model, probe.clone()))
            except Exception:  # the user's forward refused this probe
                continue
    return None


def _hooked(net: nn.Module) -> bool:
    """Whether the user has hooks on the network's modules: they must see its own layers run."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in net.modules())


def _fold(model: Model, x: torch.Tensor) -> tuple[nn.Module | None, frozenset[str]]:
    """The folded copy and the names of the layers whose output it changed, or ``(None, {})``."""
    norms, pads = _foldable(model, x)
    if not norms and not pads:
        return None, frozenset()
    try:
        net = copy.deepcopy(model.net).eval().requires_grad_(False)
    except Exception:  # a network holding something that cannot be copied (a lock, a file) runs as it is
        return None, frozenset()
    modules = dict(net.named_modules())
    for norm, convolution in norms.items():
        _merge(modules[convolution], modules[norm])
        _replace(modules, norm)
    for convolution, pad in pads.items():
        left, _, top, _ = modules[pad].padding
        modules[convolution].padding = (modules[convolution].padding[0] + top, modules[convolution].padding[1] + left)
        _replace(modules, pad)
    _COPIES[net] = weakref.ref(model.net)
    return net, frozenset(norms.values()) | frozenset(pads.values())


def _replace(modules: dict[str, nn.Module], name: str) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(modules[parent], leaf, nn.Identity())


def _foldable(model: Model, x: torch.Tensor) -> tuple[dict[str, str], dict[str, str]]:
    """``({batch norm: convolution before it}, {convolution: zero pad before it})``, the pairs one
    forward of ``x`` shows foldable."""
    modules = dict(model.net.named_modules())
    convolutions = {n for n, m in modules.items() if isinstance(m, nn.Conv2d)}
    norms = {n for n, m in modules.items() if type(m) is nn.BatchNorm2d and m.running_mean is not None}
    pads = {n for n, m in modules.items() if _symmetric_zero_pad(m)}
    padded = {n for n in convolutions if modules[n].padding_mode == "zeros" and isinstance(modules[n].padding, tuple)}
    if not norms and not pads:
        return {}, {}
    links = _links(model, x, convolutions | pads, norms | padded)
    inner = {c: pad for c in padded for pad in pads if pad.rpartition(".")[0] == c}  # a pad the conv calls itself
    return ({c: p for c, p in links.items() if c in norms and p in convolutions},
            {**{c: p for c, p in links.items() if c in padded and p in pads}, **inner})


def _symmetric_zero_pad(module: nn.Module) -> bool:
    if not (type(module) is nn.ZeroPad2d or (type(module) is nn.ConstantPad2d and module.value == 0)):
        return False
    left, right, top, bottom = module.padding
    return left == right and top == bottom


def _links(model: Model, x: torch.Tensor, producers: set[str], consumers: set[str]) -> dict[str, str]:
    """``{consumer: producer}`` where every call of the consumer takes the output of one and the
    same producer, which runs as often and feeds no other consumer (from one forward of ``x``)."""
    with frozen(model.net), torch.no_grad(), trace_calls(model.net) as calls:
        model(x)
    named = [(call.name.split("@")[0], call) for call in calls]  # the calls keep every output alive
    made = {id(call.output): name for name, call in named if name in producers}
    produced = Counter(name for name, _ in named if name in producers)
    consumed = Counter(name for name, _ in named if name in consumers)
    sources: dict[str, set[str | None]] = {name: set() for name in consumers}
    for name, call in named:
        if name in consumers:
            sources[name].add(made.get(id(call.inputs[0])) if call.inputs else None)
    links = {consumer: next(iter(seen)) for consumer, seen in sources.items() if len(seen) == 1 and None not in seen}
    fed = list(links.values())
    return {consumer: producer for consumer, producer in links.items()
            if fed.count(producer) == 1 and produced[producer] == consumed[consumer]}


def merge_batch_norm(weight: torch.Tensor, bias: torch.Tensor | None, mean: torch.Tensor, var: torch.Tensor,
                     eps: float, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolution equal to one with ``weight`` ``(C_out, C_in/groups, kh, kw)`` and ``bias``
    ``(C_out,)`` or None followed by an eval-mode batch norm (``(C_out,)`` statistics and affine
    ``gamma``, ``beta`` or None): ``(weight', bias')``, computed in float64, in ``weight``'s dtype."""
    scale = 1 / torch.sqrt(var.double() + eps)
    if gamma is not None:
        scale = scale * gamma.double()
    shift = -mean.double() * scale + (beta.double() if beta is not None else 0)
    merged = shift if bias is None else shift + bias.double() * scale
    return (weight.double() * scale.view(-1, 1, 1, 1)).to(weight.dtype), merged.to(weight.dtype)


def _merge(convolution: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Puts ``norm``'s affine map into ``convolution``'s weights and bias."""
    weight, bias = merge_batch_norm(convolution.weight, convolution.bias, norm.running_mean, norm.running_var,
                                    norm.eps, norm.weight, norm.bias)
    convolution.weight = nn.Parameter(weight, requires_grad=False)
    convolution.bias = nn.Parameter(bias, requires_grad=False)
