"""Trains convscope's digits CNN on scikit-learn's digits and writes its weights.

Run: python scripts/train_digits.py   (about ten seconds on a 2-core CPU)
Writes src/convscope/models/digits_cnn.pt (float32 state dict, ~100 kB) and prints the
held-out accuracy. The split and seeds are fixed, so the result is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from convscope.models.digits import DIGITS_MEAN, DIGITS_STD, DigitsCNN, digits_dataset, split

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "convscope" / "models" / "digits_cnn.pt"
EPOCHS, BATCH, LR = 40, 64, 3e-3


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - DIGITS_MEAN[0]) / DIGITS_STD[0]


def train() -> tuple[DigitsCNN, float]:
    torch.manual_seed(0)
    images, labels = digits_dataset()
    train_idx, test_idx = split(len(images))
    net = DigitsCNN()
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    for _ in range(EPOCHS):
        net.train()
        for batch in torch.randperm(len(train_idx)).split(BATCH):
            index = train_idx[batch]
            shifted = torch.roll(images[index], shifts=tuple(torch.randint(-1, 2, (2,)).tolist()), dims=(2, 3))
            loss = F.cross_entropy(net(normalize(shifted)), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(normalize(images[test_idx])).argmax(1) == labels[test_idx]).float().mean().item()
    return net, accuracy


if __name__ == "__main__":
    net, accuracy = train()
    torch.save(net.state_dict(), OUTPUT)
    print(f"held-out accuracy {accuracy:.4f}; wrote {OUTPUT} ({OUTPUT.stat().st_size / 1024:.0f} kB)")
