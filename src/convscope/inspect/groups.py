"""Neuron groups (Olah et al. 2018, "The Building Blocks of Interpretability"): a layer's
activations on one image factorized into a few non-negative groups of channels.

``A ≈ W H``: ``A`` is the layer's ``(h*w, C)`` activations (negative values, which smooth
activations like swish produce, are set to 0 first), each of the ``k`` rows of ``H`` a direction
in channel space (unit length) and each column of ``W`` where in the image that group is active.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from convscope.core.hooks import capture, frozen
from convscope.core.render import Picture, grid, overlay, picture
from convscope.core.summary import map_layer
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model


@dataclass
class NeuronGroups:
    """A layer's activations on one image as ``k`` groups.

    Attributes:
        layer: the layer; image: ``(3, H, W)`` the image in [0, 1].
        activations: ``(C, h, w)`` the (non-negative) activations factorized.
        maps: ``(k, h, w)`` where each group is active (``W``).
        directions: ``(k, C)`` each group's channel direction, unit length (``H``).
    """

    layer: str
    image: torch.Tensor
    activations: torch.Tensor
    maps: torch.Tensor
    directions: torch.Tensor

    @property
    def reconstruction(self) -> torch.Tensor:
        """``(C, h, w)`` the activations as the groups rebuild them."""
        return torch.einsum("khw,kc->chw", self.maps, self.directions)

    @property
    def error(self) -> float:
        """Relative Frobenius error of the reconstruction."""
        return float((self.reconstruction - self.activations).norm() / self.activations.norm().clamp_min(1e-12))

    @property
    def contributions(self) -> torch.Tensor:
        """``(k, h, w)`` each group's part of the channel-summed activation map; they add up to
        ``reconstruction.sum(0)``."""
        return self.maps * self.directions.sum(1).view(-1, 1, 1)

    def picture(self, captions: list[str] | None = None) -> Picture:
        """The image and, per group, its map over the image (each on its own scale)."""
        tiles = [self.image] + [overlay(self.image, heat) for heat in self.maps]
        caption = f"{len(self.maps)} neuron groups of {self.layer} (error {self.error:.0%})"
        if captions:
            caption += ": " + ", ".join(captions)
        return picture(grid(torch.stack(tiles), columns=len(tiles), padding=4), caption)


def neuron_groups(model: Model | nn.Module, x: torch.Tensor, layer: str, *, groups: int = 6, seed: int = 0,
                  iterations: int = 1000) -> NeuronGroups:
    """Non-negative matrix factorization of ``layer``'s activations on ``x`` ``(1, 3, H, W)`` into
    ``groups`` groups (scikit-learn's NMF, NNDSVDA start, ``seed`` for its randomness)."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    model = as_model(model)
    if x.dim() != 4 or len(x) != 1:
        raise ConvscopeError(f"neuron groups take one image (1, 3, H, W), not {tuple(x.shape)}")
    map_layer(model, layer, "neuron groups")
    with frozen(model.net), torch.no_grad():
        acts = capture(model, model.net, x.to(model.device), [layer], detach=True)[layer]
    activations = acts[0].float().cpu().clamp_min(0)
    channels, height, width = activations.shape
    if not 1 <= groups <= min(channels, height * width):
        raise ConvscopeError(f"groups must be 1..{min(channels, height * width)} for layer {layer!r}, not {groups}")
    flat = activations.flatten(1).T.double().numpy()                                   # (h*w, C)
    factorization = NMF(n_components=groups, init="nndsvda", max_iter=iterations, tol=1e-6, random_state=seed)
    with warnings.catch_warnings():  # stopping at ``iterations`` is fine: the error is reported
        warnings.simplefilter("ignore", ConvergenceWarning)
        where = factorization.fit_transform(flat)                                     # (h*w, k)
    directions = factorization.components_                                            # (k, C)
    norms = np.linalg.norm(directions, axis=1).clip(1e-12)
    maps = torch.from_numpy(where * norms).float().T.reshape(groups, height, width)
    order = maps.flatten(1).sum(1).argsort(descending=True)                            # largest group first
    directions = torch.from_numpy(directions / norms[:, None]).float()
    return NeuronGroups(layer, x[0].detach().cpu().float(), activations, maps[order], directions[order])
