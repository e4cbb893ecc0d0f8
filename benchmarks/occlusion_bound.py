"""How close fast occlusion could come to exact with a given number of exactly computed positions.

Run: python benchmarks/occlusion_bound.py [--positions 300]

The fast mode computes some patch positions exactly and fills in the rest, so its time is about
the number of positions computed (about 10 ms each on the default model, 2-core CPU). For each
sample photo this prints the SSIM to the exact map (of the per-pixel drops, as the tour and
``attribution.py`` report it) at ``--positions`` positions of the 27x27 grid (16 px patch,
stride 8), for

* ``fast``: the fast mode itself, its drill set to compute that many;
* ``oracle``: positions chosen knowing the exact map, a bound no real selection reaches: from
  every fourth row and column, repeatedly the two whose filled-in value is furthest from the
  exact one, the rest filled by harmonic interpolation (each the mean of its four neighbours).

300 positions (about 2.8 s) is about what 8x Captum's best batching allows in ``attribution.py``
(2.5-3.2 s over four runs on a 2-core AMD EPYC).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import convscope as cs
from convscope.attribute.occlusion import _every_other, _positions, _spread, occlusion
from convscope.core.metrics import ssim

PHOTOS = ("cat", "coffee", "astronaut", "rocket")
PATCH, STRIDE, SIZE = 16, 8, 224


def harmonic_fill(values: torch.Tensor, known: torch.Tensor, sweeps: int = 300) -> torch.Tensor:
    """``(R, C)`` grid equal to ``values`` where ``known``, elsewhere the mean of its four neighbours."""
    four = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]]).view(1, 1, 3, 3) / 4
    filled = torch.where(known, values, values[known].mean())
    for _ in range(sweeps):
        around = F.conv2d(F.pad(filled[None, None], (1, 1, 1, 1), mode="replicate"), four)[0, 0]
        filled = torch.where(known, values, around)
    return filled


def oracle_fill(exact: torch.Tensor, count: int) -> torch.Tensor:
    """``exact`` at ``count`` positions picked knowing it, harmonically filled elsewhere."""
    known = torch.zeros_like(exact, dtype=torch.bool)
    rows = torch.tensor(sorted({*range(0, exact.shape[0], 4), exact.shape[0] - 1}))
    cols = torch.tensor(sorted({*range(0, exact.shape[1], 4), exact.shape[1] - 1}))
    known[rows[:, None], cols[None, :]] = True
    while int(known.sum()) < count:
        error = (harmonic_fill(exact, known) - exact).abs().masked_fill(known, -1.0)
        known.view(-1)[error.flatten().topk(min(2, count - int(known.sum()))).indices] = True
    return harmonic_fill(exact, known)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=300)
    args = parser.parse_args()
    side = len(_positions(SIZE, PATCH, STRIDE))
    coarse = len(_every_other(torch.arange(side))) ** 2
    if not coarse <= args.positions <= side**2:
        parser.error(f"--positions {args.positions}: give {coarse} (the coarse grid) to {side**2} (every position)")
    drill = (args.positions - coarse) / side**2
    model = cs.load_model()
    print(f"{args.positions} of {side * side} positions computed exactly (fast mode: drill {drill:.3f})")
    print(f"{'photo':10s} {'exact s':>8s} {'fast s':>8s} {'fast SSIM':>10s} {'oracle SSIM':>12s}")
    for name in PHOTOS:
        x = cs.sample_image(name, size=SIZE)
        target = int(model(x).argmax())
        start = time.perf_counter()
        exact = occlusion(model, x, target, patch=PATCH, stride=STRIDE, mode="exact")
        exact_seconds = time.perf_counter() - start
        start = time.perf_counter()
        fast = occlusion(model, x, target, patch=PATCH, stride=STRIDE, mode="fast", drill=drill)
        fast_seconds = time.perf_counter() - start
        drops = exact.baseline[:, None, None] - oracle_fill(exact.probabilities[0], args.positions)[None]
        oracle = _spread(drops, (SIZE, SIZE), PATCH, STRIDE)[0]
        print(f"{name:10s} {exact_seconds:8.2f} {fast_seconds:8.2f} "
              f"{ssim(fast.attribution[0], exact.attribution[0]):10.3f} "
              f"{ssim(oracle, exact.attribution[0]):12.3f}")


if __name__ == "__main__":
    main()
