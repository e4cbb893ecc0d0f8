"""Activation atlas: the sampled vectors are the layer's own, whatever the chunking; the grid
cells are the means of their vectors; a class atlas keeps that class's vectors only."""

import numpy as np
import torch

from convscope.core.hooks import capture
from convscope.data.datasets import open_dataset
from convscope.data.loader import fitted_image
from convscope.inspect.atlas import activation_atlas, activation_samples


def test_samples_are_the_layers_vectors_whatever_the_chunking(lite0, tmp_path):
    small = activation_samples(lite0, "photos:12", tmp_path / "a", layer="_blocks.6", per_image=3, chunk_size=5,
                               progress=False)
    large = activation_samples(lite0, "photos:12", tmp_path / "b", layer="_blocks.6", per_image=3, chunk_size=12,
                               progress=False)
    assert np.array_equal(small.images, large.images) and np.allclose(small.vectors, large.vectors, atol=1e-5)
    assert small.vectors.shape == (36, 80) and sorted(set(small.images.tolist())) == list(range(12))
    dataset = open_dataset("photos:12")
    image = fitted_image(dataset, 4, lite0.input_size)[None]
    with torch.no_grad():
        maps = capture(lite0, lite0.net, image, ["_blocks.6"])["_blocks.6"][0].flatten(1).T.numpy()
        logits = lite0(image)
    for vector in small.vectors[small.images == 4]:  # each is one position's activation vector
        assert np.abs(maps - vector).max(1).min() < 1e-4
    assert (small.classes[small.images == 4] == int(logits.argmax())).all()


def test_cells_are_means_and_a_class_atlas_keeps_its_class(lite0, tmp_path):
    samples = activation_samples(lite0, "photos:24", tmp_path / "s", layer="_blocks.6", per_image=4, progress=False)
    atlas = activation_atlas(lite0, samples, side=4, min_count=1, method="sklearn-tsne", size=32, steps=2)
    assert atlas.counts.sum() == len(samples.vectors)  # min_count 1: every vector is in a drawn cell
    weighted = (atlas.directions * torch.from_numpy(atlas.counts)[:, None].float()).sum(0)
    assert torch.allclose(weighted, torch.from_numpy(samples.vectors).sum(0), rtol=1e-4, atol=1e-3)
    assert atlas.images.shape == (len(atlas.cells), 3, 32, 32)
    assert atlas.picture().array.shape[0] == 4 * 32 + 5
    sparse = activation_atlas(lite0, samples, side=4, min_count=5, method="sklearn-tsne", size=32, steps=2)
    assert (sparse.counts >= 5).all() and len(sparse.cells) < len(atlas.cells)
    common = int(np.bincount(samples.classes).argmax())
    only = activation_atlas(lite0, samples, side=3, min_count=1, target=common, method="sklearn-tsne", size=32,
                            steps=2)
    assert len(only.points) == int((samples.classes == common).sum())
