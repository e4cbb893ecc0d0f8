"""Saliency-based segmentation (Simonyan et al. 2014, arXiv:1312.6034, section 3.1).

The class saliency map gives seeds — its top quantile is foreground, its bottom quantile
background — and GrabCut (OpenCV) grows them into an object mask using the image's colors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from convscope.attribute.saliency import saliency
from convscope.core.images import to_uint8
from convscope.core.render import Picture, picture, side_by_side
from convscope.errors import ConvscopeError
from convscope.models.model import Model


@dataclass
class Segmentation:
    """Object masks.

    Attributes:
        masks: ``(B, H, W)`` bool, True on the object.
        saliency: ``(B, H, W)`` the map that seeded them.
        images: ``(B, 3, H, W)`` the images.
    """

    masks: torch.Tensor
    saliency: torch.Tensor
    images: torch.Tensor

    def picture(self, index: int = 0) -> Picture:
        image = self.images[index]
        mask = self.masks[index].float()
        cutout = image * (0.25 + 0.75 * mask)
        coverage = float(mask.mean())
        return picture(side_by_side([image, cutout]), f"object mask covering {coverage:.0%} of the image",
                       coverage=coverage)

    def _repr_png_(self) -> bytes:
        return self.picture()._repr_png_()


def segment(model: Model | nn.Module, x: torch.Tensor, target=None, *, foreground: float = 0.95,
            background: float = 0.30, iterations: int = 5) -> Segmentation:
    """Segments the object of class ``target`` (the top class by default) in each image.

    Args:
        foreground: saliency quantile above which pixels seed the object.
        background: saliency quantile below which pixels seed the background.
        iterations: GrabCut iterations.
    """
    try:
        import cv2
    except ImportError:
        raise ConvscopeError("segmentation needs OpenCV: pip install 'convscope[segment]'") from None
    result = saliency(model, x, target, method="gradient")
    heat = _smooth(result.map)
    masks = []
    for image, values in zip(result.images, heat):
        masks.append(torch.from_numpy(_grabcut(cv2, to_uint8(image), values.numpy(), foreground, background,
                                               iterations)))
    return Segmentation(torch.stack(masks), heat, result.images)


def _smooth(maps: torch.Tensor) -> torch.Tensor:
    """A light blur so seeds form regions rather than scattered pixels."""
    kernel = torch.ones(1, 1, 5, 5) / 25
    return torch.nn.functional.conv2d(maps[:, None], kernel, padding=2)[:, 0]


def _grabcut(cv2, image: np.ndarray, heat: np.ndarray, foreground: float, background: float,
             iterations: int) -> np.ndarray:
    high, low = np.quantile(heat, foreground), np.quantile(heat, background)
    seeds = np.full(heat.shape, cv2.GC_PR_BGD, np.uint8)
    seeds[heat >= np.quantile(heat, 0.5 * (foreground + background))] = cv2.GC_PR_FGD
    seeds[heat >= high] = cv2.GC_FGD
    seeds[heat <= low] = cv2.GC_BGD
    background_model, foreground_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(image[:, :, ::-1]), seeds, None, background_model, foreground_model,
                iterations, cv2.GC_INIT_WITH_MASK)
    return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
