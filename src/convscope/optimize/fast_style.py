"""Fast style transfer (Johnson, Alahi, Fei-Fei, ECCV 2016): learn the optimization once.

A small image-to-image network is trained so that its output, for any photo, scores well on the
perceptual losses of :mod:`convscope.optimize.style` (content of that photo, style of one style
image). After training, stylizing is one forward pass instead of hundreds of optimizer steps.
The network is Johnson et al.'s (reflection-padded convolutions, instance norm, residual blocks,
upsampling by nearest neighbour + convolution against checkerboard artifacts), slimmed by
``width`` so that a few minutes of CPU training give a usable result.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from convscope.core.denormals import flush_denormals
from convscope.core.fastpath import fast_layout, fast_model
from convscope.core.forward import score
from convscope.core.hooks import frozen
from convscope.core.images import resize
from convscope.core.objectives import total_variation
from convscope.errors import ConvscopeError
from convscope.models.model import Model, as_model
from convscope.optimize.style import StyleLayers, StyleLoss


class StyleNetwork(nn.Module):
    """Photo ``(B, 3, H, W)`` in [0, 1] -> stylized photo, same shape, in [0, 1].

    Args:
        width: channels of the first layer (Johnson et al. use 32); the two downsampled stages
            have 2x and 4x as many.
        residuals: residual blocks at the lowest resolution (Johnson et al. use 5).
    """

    def __init__(self, width: int = 16, residuals: int = 3) -> None:
        super().__init__()
        self.config = {"width": width, "residuals": residuals}
        w = width
        self.layers = nn.Sequential(
            _conv(3, w, 9), _conv(w, 2 * w, 3, stride=2), _conv(2 * w, 4 * w, 3, stride=2),
            *[_Residual(4 * w) for _ in range(residuals)],
            _conv(4 * w, 2 * w, 3, upsample=True), _conv(2 * w, w, 3, upsample=True),
            _conv(w, 3, 9, norm=False, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")  # the two stride-2 stages need /4
        return torch.sigmoid(self.layers(padded)[..., :h, :w])


def _conv(cin: int, cout: int, kernel: int, *, stride: int = 1, upsample: bool = False, norm: bool = True,
          relu: bool = True) -> nn.Sequential:
    parts: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
    parts += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
    parts += [nn.InstanceNorm2d(cout, affine=True)] if norm else []
    parts += [nn.ReLU()] if relu else []
    return nn.Sequential(*parts)


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3), _conv(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def train_style_network(model: Model | nn.Module, style: torch.Tensor, photos: Sequence[torch.Tensor], *,
                        size: int = 256, batch: int = 4, steps: int = 400, lr: float = 2e-3,
                        content_weight: float = 1.0, style_weight: float = 1.0, tv_weight: float = 1.0,
                        width: int = 16, residuals: int = 3, layers: StyleLayers | None = None,
                        smoothing: str = "none", seed: int = 0, progress: bool = False) -> StyleNetwork:
    """Trains a :class:`StyleNetwork` for ``style`` ``(1, 3, h, w)`` on random crops of ``photos``.

    Args:
        model: the loss network (frozen; restored after).
        photos: ``(1, 3, H, W)`` images in [0, 1]; each step takes ``batch`` random crops of
            ``size`` pixels (random scale and horizontal flip).
        steps: optimizer (Adam) steps; the weights as in :func:`~convscope.optimize.style.stylize`
            (the style weighs less by default: the network starts from nothing, not from the photo,
            and a strong style makes it forget the content).
        seed: initial weights and crops: the same seed gives the same network on the CPU.

    Returns:
        The trained network in eval mode, on the model's device. Ctrl-C stops training early and
        returns the network as it is.
    """
    if not photos:
        raise ConvscopeError("fast style training needs at least one content photo")
    model = as_model(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        network = StyleNetwork(width, residuals).to(model.device).train()
    # its last convolution (16 to 3 channels, 9x9) runs its backward 9x slower in the default layout
    crops = torch.channels_last if model.device.type == "cpu" else torch.contiguous_format
    network.to(memory_format=crops)
    loss = StyleLoss(model, style, layers, smoothing)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    first = random_crops(photos[:1], batch, size, torch.Generator().manual_seed(seed)).to(model.device)
    fast = fast_model(model, [*loss.layers.style, loss.layers.content], first)
    layout = fast_layout(fast, first)  # the self-check's verdict for images of this size
    with frozen(fast.net), flush_denormals():
        try:
            for _ in tqdm(range(steps), desc="style network", disable=not progress, unit="step"):
                x = random_crops(photos, batch, size, generator).to(model.device).contiguous(memory_format=crops)
                objective = (content_weight * loss.content(x) + style_weight * loss.style()
                             + tv_weight * total_variation())
                optimizer.zero_grad(set_to_none=True)
                (-score(fast, network(x).contiguous(memory_format=layout), objective).mean()).backward()
                optimizer.step()
        except KeyboardInterrupt:
            pass
    return network.to(memory_format=torch.contiguous_format).eval()


def random_crops(photos: Sequence[torch.Tensor], count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``size`` x ``size`` crops ``(count, 3, size, size)``: a random photo, a
    random scale (the crop covers 50-100% of its shorter side), a random flip."""
    crops = []
    for _ in range(count):
        photo = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        side = min(photo.shape[-2:])
        crop = int(side * (0.5 + 0.5 * float(torch.rand(1, generator=generator))))
        top = int(torch.randint(photo.shape[-2] - crop + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[-1] - crop + 1, (1,), generator=generator))
        piece = resize(photo[..., top:top + crop, left:left + crop], (size, size))
        crops.append(piece.flip(-1) if float(torch.rand(1, generator=generator)) < 0.5 else piece)
    return torch.cat(crops)


def save_style_network(network: StyleNetwork, path: str | Path) -> Path:
    """Saves the weights and shape of ``network`` (a plain dict of tensors and ints), atomically."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(suffix=".pt", dir=path.parent)
    os.close(handle)
    try:
        torch.save({"config": network.config, "state": network.state_dict()}, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_style_network(path: str | Path, device: torch.device | str = "cpu") -> StyleNetwork:
    """Loads a network saved by :func:`save_style_network` (``weights_only``: no code runs)."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        network = StyleNetwork(**saved["config"])
        network.load_state_dict(saved["state"])
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        raise ConvscopeError(f"{path}: not a style network saved by convscope style-train "
                             f"({str(error).splitlines()[0][:200]})") from None
    return network.to(device).eval()


@torch.no_grad()
def apply_style(network: StyleNetwork, image: torch.Tensor) -> torch.Tensor:
    """Stylizes ``image`` ``(B, 3, H, W)`` in [0, 1] in one forward pass; same shape, on the CPU."""
    device = next(network.parameters()).device
    return network(image.to(device)).cpu()
