"""Methods x metrics over a dataset: chunk by chunk, each chunk's per-image values saved as it
finishes (a stopped run resumes), chunks shared among torchrun ranks, merged into one report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from convscope.data.datasets import ImageDataset, open_dataset
from convscope.data.distributed import Ranks
from convscope.data.loader import chunk_range, stream
from convscope.data.results import ChunkStore
from convscope.evaluate.curves import Curve
from convscope.evaluate.report import Report
from convscope.evaluate.runner import evaluate
from convscope.models.model import Model

#: Images per evaluated batch, and how many of the first chunk's images the report pictures.
BATCH, SHOWN = 8, 8


def evaluate_dataset(model: Model, dataset: str | Path | ImageDataset, folder: str | Path, methods: Sequence[str],
                     metrics: Sequence[str], *, chunk_size: int = 32, ranks: Ranks | None = None,
                     progress: bool = True) -> Report:
    """Evaluates ``methods`` x ``metrics`` on every image of ``dataset`` (each image's top class, or
    its prediction for the model's task).

    Args:
        folder: where the chunks go (``folder/chunks``); a run there with the same settings resumes.

    Returns:
        A :class:`Report` of every readable image (its maps and pictures: the first chunk's first
        images); on ranks other than 0 after the shared work, the same.
    """
    images, ranks = open_dataset(dataset), ranks or Ranks()
    manifest = {"kind": "evaluate", "model": model.name, "dataset": images.spec, "methods": list(methods),
                "metrics": list(metrics)}
    store = ChunkStore(folder, manifest, count=len(images), chunk_size=chunk_size, ranks=ranks)
    mine = ranks.share(store.pending())
    total = sum(len(chunk_range(chunk, chunk_size, len(images))) for chunk in mine)
    arrays: dict[str, list] = {}
    with tqdm(total=total, desc="evaluate", unit="img", disable=not progress or not ranks.main) as bar:
        failures = []
        for batch in stream(images, mine, chunk_size=chunk_size, size=model.input_size, channels=model.channels,
                            batch_size=BATCH, workers=0):
            if len(batch.indices):
                report = evaluate(model, batch.images, methods, metrics)
                _collect(arrays, report, keep_maps=batch.chunk == 0)
            failures.extend(batch.failures)
            bar.update(len(batch.indices) + len(batch.failures))
            if batch.last:
                store.save(batch.chunk, {name: np.concatenate(parts) for name, parts in arrays.items()}, failures)
                arrays, failures = {}, []
    ranks.barrier()
    return _merged(store, model.name, list(methods), list(metrics))


def _collect(arrays: dict[str, list], report: Report, *, keep_maps: bool) -> None:
    """Adds one batch's per-image results to the chunk's arrays, under flat names."""
    if report.classes is not None:
        arrays.setdefault("classes", []).append(report.classes.numpy())
    arrays.setdefault("labels", []).append(np.array(report.labels))
    for metric, by_method in report.values.items():
        for method, values in by_method.items():
            arrays.setdefault(f"value|{metric}|{method}", []).append(values.numpy())
    for metric, by_method in report.curves.items():
        for method, curve in by_method.items():
            arrays.setdefault(f"curve|{metric}|{method}", []).append(curve.scores.numpy())
            arrays[f"fractions|{metric}|{method}"] = [curve.fractions.numpy()]
    if keep_maps:
        arrays.setdefault("images", []).append(report.images.numpy())
        for method, maps in report.maps.items():
            arrays.setdefault(f"map|{method}", []).append(maps.numpy())


def _merged(store: ChunkStore, model: str, methods: list[str], metrics: list[str]) -> Report:
    chunks = [store.load(chunk) for chunk in range(store.chunks)]
    chunks = [chunk for chunk in chunks if "labels" in chunk]  # chunks with no readable image have nothing

    def joined(name: str) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([chunk[name] for chunk in chunks]))
    first = chunks[0]
    labels = [str(label) for chunk in chunks for label in chunk["labels"]]
    classes = joined("classes") if "classes" in first else None
    report = Report(model, torch.from_numpy(first["images"][:SHOWN]), classes, labels, metrics,
                    score="class probability" if classes is not None else labels[0])
    for method in methods:
        report.maps[method] = torch.from_numpy(first[f"map|{method}"][:SHOWN])
    for metric in metrics:
        for method in methods:
            curve = None
            if f"curve|{metric}|{method}" in first:
                curve = Curve(torch.from_numpy(first[f"fractions|{metric}|{method}"]), joined(f"curve|{metric}|{method}"))
            report.add(metric, method, joined(f"value|{metric}|{method}"), curve)
    return report
