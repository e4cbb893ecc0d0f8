"""Tiny networks whose answers are known by hand, and the setup that makes random networks respond."""

from __future__ import annotations

import torch
from torch import nn

import convscope as cs


def calibrated(net: nn.Module, size: int, **settings) -> cs.Model:
    """``net`` in eval mode as a Model at ``size`` px (``settings``: its other fields), its batch
    norms' statistics measured on the four sample photos so that a random network responds to them."""
    model = cs.Model(net.eval(), input_size=(size, size), **settings)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    photos = torch.cat([cs.sample_image(name, size=size) for name in ("cat", "coffee", "astronaut", "rocket")])
    with torch.no_grad():
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        model(photos)
        for norm in norms:
            norm.eval()
    return model


def small_detr(transformers) -> nn.Module:
    """Hugging Face's DETR from a small config, seeded, with confident classes (boxes pass 0.3)."""
    config = transformers.DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, num_labels=3, num_queries=12, d_model=32,
        backbone_config=transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                                  out_features=["stage2"]),
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = transformers.DetrForObjectDetection(config).eval()
    with torch.no_grad():
        net.class_labels_classifier.weight.mul_(20)
    return net


def alexnet_like() -> nn.Sequential:
    """AlexNet's feature layers (torchvision's layout): conv1 at 0, conv5 at 10, pool5 at 12."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )


def vgg16_like() -> nn.Sequential:
    """VGG16's feature layers: conv5_3 at index 28, pool5 at 30."""
    layers: list[nn.Module] = []
    channels = 3
    for width, repeats in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(repeats):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + conv5(conv3(x)): the sum's receptive field is the union of both branches."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.b = nn.Conv2d(1, 1, 5, stride=1, padding=2)

    def forward(self, x):
        return x + self.b(self.a(x))
