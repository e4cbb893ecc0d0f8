"""Optimization speed on the default model against torch-lucent's render_vis, in one run.

Run: python benchmarks/optimize.py [--steps 48] [--device cpu|cuda]
Needs: pip install --no-deps torch-lucent==0.1.8 && pip install decorator kornia
(lucent 0.1.8 hard-imports torchvision, which has no CPU build here, and IPython, and calls two
kornia functions by names that newer kornia moved: all are shimmed below, inside this script only.)

The work: one channel of ``_blocks.10``, a 128 px Fourier image in decorrelated color, the
standard transforms (pad 12, jitter 8, scale, rotate, jitter 4), Adam lr 0.05, upsampled to
224 before the network as lucent does. Prints iterations per second and the ratio to lucent.
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import torch

import convscope as cs
from convscope.core.objectives import channel
from convscope.optimize.params import make_param
from convscope.optimize.render import render
from convscope.optimize.transforms import standard_transforms

LAYER, CHANNEL, SIZE = "_blocks.10", 3, 128


def shim_lucent_imports() -> None:
    """torchvision's Normalize and models, IPython.display, and kornia's old top-level names, for
    lucent's imports (none of them is used on the benchmarked path)."""
    names = ("torchvision", "torchvision.transforms", "torchvision.models", "IPython", "IPython.display")
    vision, transforms, models, ipython, display = (types.ModuleType(n) for n in names)
    transforms.Normalize = lambda mean, std: (lambda x: x)
    vision.transforms, vision.models, ipython.display = transforms, models, display
    models.__all__ = []
    for name, module in zip(names, (vision, transforms, models, ipython, display)):
        sys.modules.setdefault(name, module)
    import kornia
    import kornia.geometry.transform as geometry

    kornia.get_rotation_matrix2d = getattr(kornia, "get_rotation_matrix2d", geometry.get_rotation_matrix2d)
    kornia.warp_affine = getattr(kornia, "warp_affine", geometry.warp_affine)


class Pixels(torch.nn.Module):
    """The model with its normalization inside, so lucent optimizes the same pixel-space network."""

    def __init__(self, model: cs.Model) -> None:
        super().__init__()
        self.net, self.model = model.net, model

    def forward(self, x):
        return self.net(self.model.normalize(x))


def lucent_rate(model: cs.Model, steps: int) -> float:
    from lucent.optvis import objectives, param
    from lucent.optvis import render as lucent_render

    wrapped = Pixels(model).eval()
    objective = objectives.channel("net_" + LAYER.replace(".", "_"), CHANNEL)
    started = time.perf_counter()
    lucent_render.render_vis(wrapped, objective, lambda: param.image(SIZE, decorrelate=True, fft=True),
                             thresholds=(steps,), preprocess=False, progress=False, show_image=False)
    return steps / (time.perf_counter() - started)


def convscope_rate(model: cs.Model, steps: int, channels: list[int], input_size) -> float:
    param = make_param("fourier", len(channels), (SIZE, SIZE), generator=torch.Generator().manual_seed(0),
                       device=model.device)
    started = time.perf_counter()
    render(model, channel(LAYER, torch.tensor(channels)), param, steps=steps, transforms=standard_transforms(),
           input_size=input_size)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    shim_lucent_imports()
    import lucent.optvis.transform as lucent_transform

    model = cs.load_model(device=args.device)
    lucent_transform.device = model.device
    for run in (lambda: lucent_rate(model, 4), lambda: convscope_rate(model, 4, [CHANNEL], (224, 224))):
        run()  # warm-up
    lucent = max(lucent_rate(model, args.steps) for _ in range(2))
    rows = [
        ("same work (upsampled to 224, like lucent)", [CHANNEL], (224, 224)),
        ("convscope default: the 128 px image goes in as it is", [CHANNEL], None),
        ("4 channels as one batch, upsampled to 224 (per channel)", [0, 1, 2, CHANNEL], (224, 224)),
    ]
    print(f"device: {model.device}, threads: {torch.get_num_threads()}, torch {torch.__version__}; "
          f"{LAYER} channel {CHANNEL}, {SIZE} px Fourier, standard transforms, Adam, {args.steps} steps")
    print(f"{'work':<58} {'convscope it/s':>14} {'lucent it/s':>11} {'ratio':>7}")
    for name, channels, size in rows:
        ours = max(convscope_rate(model, args.steps, channels, size) for _ in range(2)) * len(channels)
        print(f"{name:<58} {ours:14.1f} {lucent:11.1f} {ours / lucent:6.2f}x")


if __name__ == "__main__":
    main()
