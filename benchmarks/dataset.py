"""Dataset-scale work in one run: code extraction, t-SNE against scikit-learn, memory as N grows.

Run: python benchmarks/dataset.py [--images 256] [--repeats 2] [--tsne 5000 20000] [--memory 10000 100000]

1. Images/s of extracting the default model's penultimate codes from augmented crops of the
   bundled photos (cropped and resized per image), convscope's ``extract_codes`` (chunks
   written to disk, batch 4, channels-last, after a warm-up run; best of --repeats) against
   a plain batched loop in one process, once as usually written (batch 32) and once tuned
   (batch 4, channels-last).
2. t-SNE of digits-CNN codes of augmented digits: convscope's ``embed_2d`` (openTSNE) against
   scikit-learn's ``TSNE`` (both Barnes-Hut/FFT defaults, all cores): wall time, and the KL
   divergence of each result measured the same way (exact Q, the same perplexity-30 P).
3. Peak memory (VmHWM, the peak resident set of a fresh process) of ``extract_codes`` and ``top_activations``
   over the digits CNN when the dataset grows from 10k to 100k images.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from timing import seconds

import convscope as cs
from convscope.data.datasets import open_dataset
from convscope.inspect.codes import extract_codes
from convscope.inspect.embedding import embed_2d


def extraction(images: int, repeats: int) -> None:
    model = cs.load_model(device="cpu")
    dataset = open_dataset(f"photos:{images}")

    def ours() -> np.ndarray:
        with tempfile.TemporaryDirectory() as folder:
            return extract_codes(model, dataset, folder, progress=False).codes.copy()

    pipelines = {"convscope extract_codes": ours,
                 "plain loop, batch 32": lambda: _plain_loop(model, dataset, 32, torch.contiguous_format),
                 "plain loop, batch 4, channels-last": lambda: _plain_loop(model, dataset, 4, torch.channels_last)}
    reference = ours()
    for name, run in pipelines.items():
        assert np.allclose(run(), reference, atol=1e-3), f"{name} computes other codes"
    rates = {name: images / seconds(run, repeats) for name, run in pipelines.items()}
    convscope = rates.pop("convscope extract_codes")
    print(f"\nCode extraction, EfficientNet-Lite0, {images} augmented photo crops, 224 px, {os.cpu_count()} cores, "
          f"best of {repeats}")
    print(f"{'pipeline':<40} {'images/s':>9} {'convscope speed-up':>19}")
    print(f"{'convscope extract_codes':<40} {convscope:9.1f} {'':>19}")
    for name, rate in rates.items():
        print(f"{name:<40} {rate:9.1f} {convscope / rate:18.2f}x")


def _plain_loop(model: cs.Model, dataset, batch: int, layout) -> np.ndarray:
    """What people write: read, resize, stack, forward, keep the pooled features."""
    codes = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch):
            x = torch.stack([cs.load_image(dataset.read(i), size=224)[0] for i in
                             range(start, min(start + batch, len(dataset)))]).to(memory_format=layout)
            features = model.net.extract_features(model.normalize(x)) if hasattr(model.net, "extract_features") \
                else None
            codes.append(features.mean(dim=(2, 3)).numpy())
    return np.concatenate(codes)


def tsne(sizes: list[int]) -> None:
    from sklearn.manifold import TSNE

    model = cs.load_model("digits_cnn", device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        codes = np.array(extract_codes(model, f"digits:{max(sizes)}", folder, progress=False).codes)
    print(f"\nt-SNE of {codes.shape[1]}-d digits-CNN codes, perplexity 30, {os.cpu_count()} cores")
    print(f"{'points':>7} {'openTSNE s':>11} {'sklearn s':>10} {'speed-up':>9} {'KL ours':>8} {'KL sklearn':>11}")
    for n in sizes:
        x = codes[:n]
        started = time.perf_counter()
        ours = embed_2d(x, "tsne")
        ours_seconds = time.perf_counter() - started
        started = time.perf_counter()
        theirs = TSNE(perplexity=30, init="pca", random_state=0, n_jobs=os.cpu_count()).fit_transform(x)
        theirs_seconds = time.perf_counter() - started
        p = _affinities(x)
        print(f"{n:>7} {ours_seconds:>11.1f} {theirs_seconds:>10.1f} {theirs_seconds / ours_seconds:>8.2f}x "
              f"{_kl(p, ours):>8.4f} {_kl(p, theirs):>11.4f}")


def _affinities(x: np.ndarray):
    """Symmetric perplexity-30 affinities on the 90 nearest neighbours (what both libraries fit)."""
    from openTSNE.affinity import PerplexityBasedNN

    return PerplexityBasedNN(x, perplexity=30, method="exact", n_jobs=os.cpu_count(), verbose=False).P.tocoo()


def _kl(p, y: np.ndarray, block: int = 2048) -> float:
    """KL(P || Q) with Q the exact Student-t similarities of the embedding ``y``."""
    y = torch.from_numpy(np.asarray(y, dtype=np.float64))
    total = 0.0
    for start in range(0, len(y), block):
        w = 1 / (1 + torch.cdist(y[start:start + block], y) ** 2)
        total += float(w.sum()) - min(block, len(y) - start)  # leave out i == j
    rows, cols, values = torch.from_numpy(p.row), torch.from_numpy(p.col), torch.from_numpy(p.data)
    q = 1 / (1 + ((y[rows] - y[cols]) ** 2).sum(1)) / total
    return float((values * torch.log(values / q)).sum())


def memory(sizes: list[int]) -> None:
    print("\nPeak memory of a fresh process (VmHWM), digits CNN, augmented digits, batch 64")
    print(f"{'images':>8} {'codes MiB':>10} {'top-k MiB':>10} {'codes s':>8} {'top-k s':>8}")
    for n in sizes:
        row = []
        for task in ("codes", "top"):
            row.extend(_child_peak(task, n))
        print(f"{n:>8} {row[0]:>10.0f} {row[2]:>10.0f} {row[1]:>8.1f} {row[3]:>8.1f}")


def _child_peak(task: str, n: int) -> tuple[float, float]:
    code = (
        "import sys, tempfile, convscope as cs\n"
        "from convscope.inspect.codes import extract_codes\n"
        "from convscope.inspect.top_patches import top_activations\n"
        "m = cs.load_model('digits_cnn', device='cpu')\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        f"    extract_codes(m, 'digits:{n}', d, progress=False, batch_size=64) if '{task}' == 'codes' else "
        f"top_activations(m, 'digits:{n}', d, layer='features.3', k=9, progress=False, batch_size=64)\n"
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tsne", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--memory", type=int, nargs="+", default=[10000, 100000])
    args = parser.parse_args()
    extraction(args.images, args.repeats)
    tsne(args.tsne)
    memory(args.memory)


if __name__ == "__main__":
    main()
