"""Attention rollout (Abnar & Zuidema 2020, arXiv:2005.00928): how much each image patch flows
into the class token through every attention layer of a vision transformer.

Each layer's attention, averaged over heads, is mixed half-and-half with the identity (the
residual connection) and its rows renormalized; the product over layers says how much of each
input token reaches each output token. The class token's row, laid out on the patch grid, is
the map (a network without a class token gets the mean over all rows).

The attention weights are read where the network computes them, whatever module does it: a
dispatch mode sees each fused attention op (``scaled_dot_product_attention`` and its kernels,
``nn.MultiheadAttention``'s fused path) and recomputes its weights from the same queries and
keys, and takes explicit ``softmax`` outputs of shape ``(B, heads, N, N)`` as they are. Windowed
attention (Swin) has no single token sequence to roll out and is refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.hooks import frozen
from convscope.core.maps import reading_of
from convscope.core.tracing import EagerTracer
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model

aten = torch.ops.aten
FUSIONS = ("mean", "max", "min")


class _AttentionRecorder(EagerTracer):
    """Collects every attention map of a forward pass, ``(B', heads, N, N)`` each, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.maps: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if "scaled_dot_product" in name and "backward" not in name:
            self.maps.append(_weights(args[0], args[1], kwargs.get("attn_mask"), kwargs.get("scale")))
        elif func is aten._native_multi_head_attention.default:
            self.maps.append(func(*args[:10], need_weights=True, average_attn_weights=False)[1])
        elif func is aten._softmax.default and out.dim() == 4 and out.shape[-1] == out.shape[-2]:
            self.maps.append(out.detach())
        return out


def _weights(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None, scale: float | None) -> torch.Tensor:
    """``softmax(q k^T * scale + mask)``, the weights a fused attention op used."""
    logits = query @ key.transpose(-2, -1) * (scale if scale is not None else 1 / math.sqrt(query.shape[-1]))
    if mask is not None:
        logits = logits.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else logits + mask
    return logits.softmax(-1)


def attention_maps(model: Model | nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every attention layer's weights for images ``x`` ``(B, C, H, W)`` in [0, 1]: ``(B', heads, N, N)``
    each (``B'`` is ``B`` times the number of windows for windowed attention)."""
    model = as_model(model)

    def record(seen: torch.Tensor) -> list[torch.Tensor]:
        with _AttentionRecorder() as recorder:
            model(seen)
        return recorder.maps
    with frozen(model.net), torch.no_grad():
        return model.run_accepted(record, x.to(model.device))


def attention_rollout(model: Model | nn.Module, x: torch.Tensor, *, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout of each image: ``(B, H, W)`` non-negative, at the input's resolution.

    Args:
        model: a vision transformer (any network whose forward computes attention over one
            token sequence per image).
        x: ``(B, C, H, W)`` images in [0, 1].
        head_fusion: how a layer's heads are combined: ``mean`` (the paper's), ``max`` or ``min``.

    Raises:
        ConvscopeError: no attention in the forward pass, windowed attention, or a token count
            that does not read as a grid of patches.
    """
    if head_fusion not in FUSIONS:
        raise ConvscopeError(f"unknown head fusion {head_fusion!r}; accepted: {', '.join(FUSIONS)}")
    model = as_model(model)
    maps = attention_maps(model, x)
    if not maps:
        raise ConvscopeError("attention rollout needs a transformer: this model computes no attention; "
                             "use gradcam instead")
    tokens = maps[0].shape[-1]
    if any(m.shape[0] != len(x) or m.shape[-1] != tokens for m in maps):
        raise ConvscopeError("attention rollout needs attention over one token sequence per image; this model's "
                             "attention is windowed or changes resolution (Swin-like): use gradcam instead")
    flow = torch.eye(tokens, device=maps[0].device).expand(len(x), -1, -1)
    for weights in maps:
        fused = getattr(weights.float(), head_fusion)(dim=1)
        fused = fused if head_fusion == "mean" else fused.values
        mixed = 0.5 * fused + 0.5 * torch.eye(tokens, device=fused.device)
        flow = (mixed / mixed.sum(-1, keepdim=True)) @ flow
    return _as_image(flow, x.shape[-2:])


def _as_image(flow: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """The class token's row of ``flow`` ``(B, N, N)`` (every row's mean without one) on the patch grid,
    upsampled to the image's ``size``."""
    reading = reading_of((len(flow), flow.shape[-1], 1), tuple(size))
    if reading is None:
        raise ConvscopeError(f"{flow.shape[-1]} tokens do not read as a grid of patches of a {tuple(size)} image")
    row = flow[:, 0] if reading.prefix else flow.mean(1)
    grid = row[:, reading.prefix:].reshape(len(flow), 1, *reading.grid)
    return F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)[:, 0].cpu()
