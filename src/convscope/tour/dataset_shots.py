"""Tour section: codes of a dataset laid out by t-SNE (digits, photo crops) and each channel's
top activating patches over photo crops."""

from __future__ import annotations

import tempfile
from functools import cache

import numpy as np
import torch

from convscope.core.render import Picture, grid, picture
from convscope.data.datasets import open_dataset
from convscope.inspect.codes import extract_codes
from convscope.inspect.embedding import embed_2d, grid_picture, knn_accuracy, scatter_picture
from convscope.inspect.top_patches import top_activations
from convscope.models import load_model
from convscope.tour.optimize_shots import _layers
from convscope.tour.runner import Shot, TourContext

SECTION = "Codes and top activations over a dataset"
TOP_LAYERS = ("_blocks.4", "_blocks.10")


def dataset_shots(context: TourContext) -> list[Shot]:
    model, full = context.model, context.full
    digits = load_model("digits_cnn", device=model.device)
    photos = open_dataset(f"photos:{512 if full else 192}")

    @cache
    def embedded(which: str):
        net, dataset = (digits, open_dataset("digits")) if which == "digits" else (model, photos)
        with tempfile.TemporaryDirectory() as folder:
            codes = extract_codes(net, dataset, folder, progress=False)
            points = embed_2d(codes.codes)
            return dataset, np.array(codes.indices), np.array(codes.labels), codes.classes, points

    def grid_of(which: str, tile: int) -> Picture:
        dataset, indices, labels, _, points = embedded(which)
        shown = grid_picture(dataset, indices, points, tile=tile)
        accuracy = knn_accuracy(points, labels)
        return picture(shown.array_tensor(), f"{shown.caption}; 10-NN accuracy of the classes in 2-D "
                       f"{accuracy:.3f}", accuracy=accuracy, **shown.numbers)

    def scatter_of(which: str) -> Picture:
        dataset, _, labels, classes, points = embedded(which)
        return scatter_picture(points, labels, classes, title=f"{dataset.spec}: penultimate codes, t-SNE",
                               accuracy=knn_accuracy(points, labels))

    shots = [Shot(SECTION, "Digits: t-SNE grid of the digits CNN's codes", lambda: grid_of("digits", 16)),
             Shot(SECTION, "Digits: t-SNE scatter by label", lambda: scatter_of("digits")),
             Shot(SECTION, "Photo crops: t-SNE grid of the codes", lambda: grid_of("photos", 32))]
    for layer in _layers(model, TOP_LAYERS):
        shots.append(Shot(SECTION, f"Top patches of {layer} over photo crops",
                          lambda layer=layer: _top_patches(model, photos, layer)))
    return shots


def _top_patches(model, photos, layer: str, channels: int = 4) -> Picture:
    with tempfile.TemporaryDirectory() as folder:
        top = top_activations(model, photos, folder, layer=layer, channels=list(range(channels)), k=9,
                              progress=False)
    pictures = [top.picture(photos, channel, tile=56) for channel in range(channels)]
    tiles = torch.stack([shown.array_tensor() for shown in pictures])
    size = top.field.size[0]
    return picture(grid(tiles, columns=channels, padding=8),
                   f"{layer}, channels 0-{channels - 1}: the 9 photo crops (of {len(photos)}) that excite each "
                   f"channel most, cut to the {size}x{size} px receptive field of the strongest unit",
                   layer=layer, receptive_field=size)
