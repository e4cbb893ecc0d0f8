"""Codes laid out in 2-D: t-SNE (openTSNE) or UMAP, the grid of images, the scatter plot.

``embed_2d`` maps ``(N, D)`` codes to ``(N, 2)`` points; ``knn_accuracy`` says in one number
how well the classes cluster there; ``grid_cells`` snaps the points to a regular grid (an
optimal assignment), which ``grid_picture`` fills with the images (Karpathy's t-SNE grid).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from convscope.core.render import Picture, figure_picture, grid, picture
from convscope.data.datasets import ImageDataset
from convscope.data.loader import fitted_image
from convscope.errors import ConvscopeError, unknown_choice

#: ``tsne``: openTSNE (scikit-learn's TSNE when openTSNE is missing); ``umap``: umap-learn;
#: ``sklearn-tsne``: scikit-learn's TSNE.
METHODS = ("tsne", "umap", "sklearn-tsne")
#: Up to this many points openTSNE's Barnes-Hut gradients beat its FFT ones on few cores (2 cores:
#: 3.0x faster at 5k points, 1.25x at 20k; the trend crosses over near 30k).
BARNES_HUT_POINTS = 30_000


def embed_2d(codes: np.ndarray, method: str = "tsne", *, perplexity: float = 30.0, seed: int = 0,
             progress: bool = False) -> np.ndarray:
    """``(N, D)`` codes -> ``(N, 2)`` float32 points.

    Raises:
        ConvscopeError: an unknown method, too few points, or umap-learn not installed.
    """
    check_method(method)
    codes = np.ascontiguousarray(codes, dtype=np.float32)
    if len(codes) < 5:
        raise ConvscopeError(f"{len(codes)} codes are too few to embed; at least 5 are needed")
    perplexity = min(perplexity, (len(codes) - 1) / 3)
    if method == "umap":
        return _umap(codes, seed)
    if method == "tsne":
        try:
            return _open_tsne(codes, perplexity, seed, progress)
        except ImportError:
            warnings.warn("openTSNE is not installed; using scikit-learn's TSNE (slower)", stacklevel=2)
    return _sklearn_tsne(codes, perplexity, seed)


def check_method(method: str) -> None:
    """Refuses, in one line, a method that is unknown or whose package is missing, so a command
    can check before its dataset pass."""
    if method not in METHODS:
        raise unknown_choice("embedding method", method, METHODS)
    if method == "umap" and importlib.util.find_spec("umap") is None:
        raise ConvscopeError("--method umap needs umap-learn: pip install 'convscope[umap]'")


def _open_tsne(codes: np.ndarray, perplexity: float, seed: int, progress: bool) -> np.ndarray:
    from openTSNE import TSNE

    steps = 750  # openTSNE's default: 250 exaggerated + 500 normal iterations
    with tqdm(total=steps, desc="t-SNE", unit="step", disable=not progress) as bar:
        def report(iteration, error, embedding):
            bar.update(50)
        gradients = "bh" if len(codes) <= BARNES_HUT_POINTS else "fft"
        tsne = TSNE(perplexity=perplexity, n_jobs=os.cpu_count() or 1, random_state=seed,
                    negative_gradient_method=gradients, callbacks=report, callbacks_every_iters=50)
        return np.asarray(tsne.fit(codes), dtype=np.float32)


def _sklearn_tsne(codes: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    tsne = TSNE(perplexity=perplexity, init="pca", random_state=seed, n_jobs=os.cpu_count() or 1)
    return tsne.fit_transform(codes).astype(np.float32)


def _umap(codes: np.ndarray, seed: int) -> np.ndarray:
    import umap
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed turns off parallelism
        return umap.UMAP(random_state=seed).fit_transform(codes).astype(np.float32)


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote: the fraction of points whose
    ``k`` nearest other points mostly share their label (ties go to the smallest label)."""
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels)
    if len(points) <= k:
        raise ConvscopeError(f"{len(points)} points are too few for a {k}-NN accuracy")
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    votes = labels[neighbours[:, 1:]]
    counts = np.apply_along_axis(np.bincount, 1, votes - labels.min(), minlength=labels.max() - labels.min() + 1)
    return float(np.mean(counts.argmax(1) + labels.min() == labels))


def grid_cells(points: np.ndarray, side: int | None = None) -> np.ndarray:
    """Assigns each 2-D point its own cell of a ``side x side`` grid, keeping neighbours together.

    The points are scaled to the unit square and matched to cell centers so that the total
    squared distance is smallest (scipy's ``linear_sum_assignment``).

    Returns:
        ``(N, 2)`` int ``(row, column)`` per point.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    side = side or int(np.ceil(np.sqrt(len(points))))
    if side * side < len(points):
        raise ConvscopeError(f"a {side}x{side} grid has fewer cells than the {len(points)} points")
    low, high = points.min(0), points.max(0)
    scaled = (points - low) / np.maximum(high - low, 1e-12)
    rows, columns = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    centers = (np.stack([columns.ravel(), side - 1 - rows.ravel()], 1) + 0.5) / side
    _, cells = linear_sum_assignment(cdist(scaled, centers, "sqeuclidean"))
    return np.stack([cells // side, cells % side], 1)


def grid_picture(dataset: ImageDataset, indices: Sequence[int], points: np.ndarray, *, tile: int = 32,
                 limit: int = 2500, seed: int = 0) -> Picture:
    """The images on a grid by their 2-D positions (up to ``limit`` of them, chosen at random).

    Args:
        dataset: where the images are read from.
        indices: ``(N,)`` dataset index of each point.
        points: ``(N, 2)`` embedded points.
        tile: pixels per image.
    """
    chosen = np.arange(len(points))
    if len(points) > limit:
        chosen = np.sort(np.random.default_rng(seed).choice(len(points), limit, replace=False))
    cells = grid_cells(points[chosen])
    side = int(cells.max()) + 1 if len(cells) else 1
    tiles = torch.full((side * side, 3, tile, tile), 1.0)
    for (row, column), index in zip(cells, np.asarray(indices)[chosen]):
        tiles[row * side + column] = fitted_image(dataset, int(index), (tile, tile))
    image = grid(tiles, columns=side, padding=1, background=0.5)
    return picture(image, f"{len(chosen)} images placed on a {side}x{side} grid by their 2-D embedding",
                   images=len(chosen), side=side)


def scatter_picture(points: np.ndarray, labels: np.ndarray, classes: Sequence[str] | None, *,
                    title: str = "", accuracy: float | None = None) -> Picture:
    """The 2-D points colored by label, with a legend; ``accuracy`` (the 10-NN one) in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 6.4), dpi=100)
    colors = plt.get_cmap("tab10" if len(set(labels.tolist())) <= 10 else "tab20")
    for label in sorted(set(labels.tolist())):
        mine = labels == label
        name = "unlabeled" if label < 0 else (classes[label] if classes else str(label))
        axes.scatter(points[mine, 0], points[mine, 1], s=4, color=colors(label % colors.N), label=name)
    if len(set(labels.tolist())) <= 20:
        axes.legend(markerscale=3, fontsize=8, loc="best")
    axes.set_xticks([]), axes.set_yticks([])
    caption = title + (f"; 10-NN accuracy in 2-D {accuracy:.3f}" if accuracy is not None else "")
    axes.set_title(caption, fontsize=9)
    figure.tight_layout()
    return figure_picture(figure, caption, accuracy=accuracy)
