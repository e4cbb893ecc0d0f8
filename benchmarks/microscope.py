"""Microscope speed: channels of a whole layer rendered per minute, in one run.

Run: python benchmarks/microscope.py [--channels 32] [--steps 48] [--chunk 16] [--device cpu|cuda]
Needs torch-lucent as for benchmarks/optimize.py (its import shims are reused from there).

The work: ``--channels`` channels of ``_blocks.10``, each a 128 px Fourier image in decorrelated
color, the standard transforms, Adam lr 0.05, ``--steps`` steps. Rows:
* lucent's render_vis, one channel at a time (the whole network runs, the image upsampled to 224);
* convscope one channel at a time with the same settings;
* convscope ``--chunk`` channels per batch with the same settings;
* the microscope's way: chunks, the image at its own 128 px (no upsampling; the forward stops at
  the layer either way), and the same transform ranges in one resampling at a fixed size
  (:func:`~convscope.optimize.transforms.affine_transforms`).
Channels per minute are measured on the first few channels of each row and extrapolated to the
layer; ratios are against lucent.
"""

from __future__ import annotations

import argparse
import time

import torch

import convscope as cs
from benchmarks.optimize import LAYER, SIZE, Pixels, shim_lucent_imports
from convscope.core.objectives import channel
from convscope.optimize.params import make_param
from convscope.optimize.render import render
from convscope.optimize.transforms import affine_transforms, standard_transforms


def lucent_seconds(model: cs.Model, channels: list[int], steps: int) -> float:
    from lucent.optvis import objectives, param
    from lucent.optvis import render as lucent_render

    wrapped = Pixels(model).eval()
    started = time.perf_counter()
    for number in channels:
        lucent_render.render_vis(wrapped, objectives.channel("net_" + LAYER.replace(".", "_"), number),
                                 lambda: param.image(SIZE, decorrelate=True, fft=True), thresholds=(steps,),
                                 preprocess=False, progress=False, show_image=False)
    return time.perf_counter() - started


def convscope_seconds(model: cs.Model, channels: list[int], steps: int, chunk: int, input_size,
                      transforms=None) -> float:
    started = time.perf_counter()
    for start in range(0, len(channels), chunk):
        chosen = torch.tensor(channels[start:start + chunk])
        param = make_param("fourier", len(chosen), (SIZE, SIZE), generator=torch.Generator().manual_seed(0),
                           device=model.device)
        render(model, channel(LAYER, chosen), param, steps=steps, transforms=transforms or standard_transforms(),
               input_size=input_size)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    shim_lucent_imports()
    import lucent.optvis.transform as lucent_transform

    model = cs.load_model(device=args.device)
    lucent_transform.device = model.device
    lucent_seconds(model, [0], 2)                       # warm-up
    convscope_seconds(model, [0, 1], 2, 2, (224, 224))
    channels = list(range(args.channels))
    single = channels[:max(2, args.channels // 8)]      # one at a time is measured on fewer channels
    rows = [("lucent, one channel at a time", lucent_seconds(model, single, args.steps) / len(single)),
            ("convscope, one channel at a time (same settings)",
             convscope_seconds(model, single, args.steps, 1, (224, 224)) / len(single)),
            (f"convscope, {args.chunk} channels per batch (same settings)",
             convscope_seconds(model, channels, args.steps, args.chunk, (224, 224)) / len(channels)),
            (f"microscope: {args.chunk} per batch, the image at its own {SIZE} px",
             convscope_seconds(model, channels, args.steps, args.chunk, None, affine_transforms(SIZE / 224))
             / len(channels))]
    print(f"device: {model.device}, threads: {torch.get_num_threads()}, torch {torch.__version__}; {LAYER}, "
          f"{SIZE} px Fourier, standard transforms, Adam, {args.steps} steps; {args.channels} channels")
    print(f"{'work':<60} {'channels/min':>12} {'vs lucent':>9}")
    lucent = rows[0][1]
    for name, seconds in rows:
        print(f"{name:<60} {60 / seconds:12.1f} {lucent / seconds:8.2f}x")


if __name__ == "__main__":
    main()
