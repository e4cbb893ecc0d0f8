"""Attention rollout against a hand computation from the transformers' own queries and keys."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convscope as cs
from convscope.attribute.rollout import attention_rollout
from convscope.attribute.saliency import saliency
from tests.architectures.test_matrix import image, model_of
from tests.conftest import assert_unchanged, snapshot

pytest.importorskip("timm")


def timm_attention_by_hand(model: cs.Model, x: torch.Tensor) -> list[torch.Tensor]:
    """Each block's softmax(q k^T / sqrt(d)) from a hook on its qkv projection: ``(B, heads, N, N)``."""
    weights, handles = [], []
    for block in model.net.blocks:
        attention = block.attn

        def keep(_, __, qkv, attention=attention):
            b, n, _ = qkv.shape
            q, k, _ = qkv.reshape(b, n, 3, attention.num_heads, -1).permute(2, 0, 3, 1, 4)
            weights.append((q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1))
        handles.append(attention.qkv.register_forward_hook(keep))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return weights


@pytest.mark.parametrize(("name", "prefix"), [("timm-vit_tiny", 1), ("timm-deit_tiny_distilled", 2)])
def test_rollout_equals_the_hand_computation(name, prefix):
    model, x = model_of(name), image(name).repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    before = snapshot(model.net)
    flow = torch.eye(model.net.patch_embed.num_patches + prefix)
    for weights in timm_attention_by_hand(model, x):
        mixed = 0.5 * weights.mean(1) + 0.5 * torch.eye(weights.shape[-1])
        flow = (mixed / mixed.sum(-1, keepdim=True)) @ flow
    side = int(model.net.patch_embed.num_patches ** 0.5)
    expected = F.interpolate(flow[:, 0, prefix:].reshape(2, 1, side, side), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)[:, 0]
    torch.testing.assert_close(attention_rollout(model, x), expected, rtol=1e-4, atol=1e-6)
    assert_unchanged(before, model.net)


def test_rollout_reads_torchvisions_fused_multi_head_attention():
    """torchvision's ViT runs nn.MultiheadAttention's fused kernel: each layer's flow rows still sum to 1,
    and the map differs between two images."""
    model = model_of("tv-vit")
    x = torch.stack([image("tv-vit")[0], image("tv-vit", "coffee")[0]])
    maps = attention_rollout(model, x)
    assert maps.shape == (2, 64, 64) and bool((maps >= 0).all())
    assert not torch.allclose(maps[0], maps[1])


def test_rollout_is_refused_where_it_does_not_apply():
    with pytest.raises(cs.ConvscopeError, match="windowed"):
        attention_rollout(model_of("timm-swin_tiny"), image("timm-swin_tiny"))
    with pytest.raises(cs.ConvscopeError, match="computes no attention; use gradcam"):
        saliency(model_of("tv-resnet18"), image("tv-resnet18"), 3, method="attention-rollout")
