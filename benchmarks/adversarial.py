"""Attack speed on the default model against torchattacks, in one run.

Run: python benchmarks/adversarial.py [--batches 8 64] [--repeats 2]
Needs: pip install --no-deps torchattacks (it does not need torchvision for FGSM and PGD)

Both attack the same images (the bundled photos, repeated to the batch size) with the same
settings: FGSM eps 8/255; PGD eps 8/255, alpha 2/255, 10 steps, no random start. Prints seconds
per batch, images per second and convscope's throughput relative to torchattacks, plus the
floor (one forward + backward of the batch, times the number of gradient steps).
"""

from __future__ import annotations

import argparse

import torch
from timing import seconds
from torch import nn

import convscope as cs
from convscope.optimize.adversarial import fgsm, pgd, quantize


class Normalized(nn.Module):
    """The model with its normalization inside, as torchattacks expects."""

    def __init__(self, model: cs.Model) -> None:
        super().__init__()
        self.model = model
        self.net = model.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torchattacks

    model = cs.load_model(device="cpu")
    wrapped = Normalized(model).eval()
    photos = torch.cat([cs.sample_image(name, size=224) for name in ("cat", "coffee", "astronaut", "rocket")])
    print(f"device: cpu, threads: {torch.get_num_threads()}, torch {torch.__version__}, "
          f"torchattacks {torchattacks.__version__}; {model.name}, 224 px")
    print(f"{'batch':>5} {'attack':<8} {'convscope s':>12} {'torchattacks s':>15} {'floor s':>8} "
          f"{'img/s':>7} {'throughput':>11}")
    for batch in args.batches:
        x = quantize(photos.repeat((batch + 3) // 4, 1, 1, 1)[:batch])
        with torch.no_grad():
            labels = model(x).argmax(-1)

        def floor():
            z = x.clone().requires_grad_(True)
            torch.autograd.grad(nn.functional.cross_entropy(model(z), labels), z)
        base = seconds(floor, args.repeats)
        runs = {"FGSM": (lambda: fgsm(model, x, eps=8 / 255), torchattacks.FGSM(wrapped, eps=8 / 255), 1),
                "PGD-10": (lambda: pgd(model, x, eps=8 / 255, alpha=2 / 255, steps=10),
                           torchattacks.PGD(wrapped, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False), 10)}
        for name, (ours, theirs, steps) in runs.items():
            mine = seconds(ours, args.repeats)
            reference = seconds(lambda theirs=theirs: theirs(x, labels), args.repeats)
            print(f"{batch:>5} {name:<8} {mine:>12.3f} {reference:>15.3f} {base * steps:>8.3f} {batch / mine:>7.1f} "
                  f"{reference / mine:>10.2f}x")


if __name__ == "__main__":
    main()
