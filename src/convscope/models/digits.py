"""A small CNN for scikit-learn's 8x8 digits, trained by ``scripts/train_digits.py``.

It runs in milliseconds, which makes it the model of fast tests and of the codes/t-SNE demo.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Normalization the network was trained with (pixels in [0, 1]).
DIGITS_MEAN, DIGITS_STD = (0.3,), (0.4,)


class DigitsCNN(nn.Module):
    """``(B, 1, 8, 8)`` normalized digits -> ``(B, 10)`` logits; ``features`` gives 64-d codes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def digits_dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``(1797, 1, 8, 8)`` float pixels in [0, 1] and ``(1797,)`` labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    return images, torch.from_numpy(digits.target).long()


def split(count: int, *, seed: int = 0, test_fraction: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed train/test split of ``count`` indices (the test part is never trained on)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    cut = int(count * (1 - test_fraction))
    return order[:cut], order[cut:]
