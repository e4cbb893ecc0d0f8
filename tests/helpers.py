"""Tiny networks whose answers are known by hand."""

from __future__ import annotations

from torch import nn


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
