"""Activation atlas over a growing dataset: time and peak memory, each size in a fresh process.

Run: python benchmarks/atlas.py [--images 1000,10000] [--layer _blocks.10] [--method umap]
Each size runs the dataset pass (one activation vector per image of ``photos:N``), the 2-D
layout and the batched render of a 12x12 grid (48 px, 64 steps) in its own process, whose peak
resident memory (VmHWM) is read from /proc; flat memory means the pass keeps only the vectors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

WORK = """
import json, sys, time
import convscope as cs
from convscope.inspect.atlas import activation_atlas, activation_samples
images, layer, method, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
model = cs.load_model(device="cpu")
started = time.perf_counter()
samples = activation_samples(model, f"photos:{images}", folder, layer=layer, progress=False)
passed = time.perf_counter()
atlas = activation_atlas(model, samples, side=12, method=method, size=48, steps=64)
done = time.perf_counter()
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"pass_s": passed - started, "atlas_s": done - passed, "cells": len(atlas.cells), "peak_mib": peak}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1000,10000")
    parser.add_argument("--layer", default="_blocks.10")
    parser.add_argument("--method", default="umap")
    args = parser.parse_args()
    print(f"{'images':>7} {'pass s':>8} {'img/s':>6} {'layout+render s':>15} {'cells':>5} {'peak MiB':>9}")
    for images in (int(n) for n in args.images.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([sys.executable, "-c", WORK, str(images), args.layer, args.method, folder],
                                  capture_output=True, text=True, check=True)
            figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{images:7d} {figures['pass_s']:8.1f} {images / figures['pass_s']:6.1f} {figures['atlas_s']:15.1f} "
              f"{figures['cells']:5d} {figures['peak_mib']:9.0f}")


if __name__ == "__main__":
    main()
