"""The images a session has opened, in memory, each under an unguessable id (never a path)."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

import torch

from convscope.core.images import resize
from convscope.errors import ConvscopeError, shorten

#: Images are kept with their longer side at most this, as 8-bit pixels: an image this size or
#: smaller is kept exactly as decoded, so its predictions equal the command line's.
KEEP_SIDE = 1024


class UnknownImage(ConvscopeError):
    """No image has this id (never uploaded, or evicted)."""


class ImageStore:
    """Up to ``capacity`` images, least recently used evicted first; safe across threads."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._images: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image: torch.Tensor) -> str:
        """Keeps a ``(1, 3, H, W)`` image in [0, 1] (shrunk to :data:`KEEP_SIDE`) and returns its new id."""
        height, width = image.shape[-2:]
        scale = min(1.0, KEEP_SIDE / max(height, width))
        image = resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._images[key] = image
            while len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return key

    def get(self, key: str) -> torch.Tensor:
        """The image ``key``, ``(1, 3, H, W)`` float in [0, 1]."""
        with self._lock:
            if key not in self._images:
                raise UnknownImage(f"no image with id {shorten(key)!r}; upload it or pick a sample again")
            self._images.move_to_end(key)
            return self._images[key].float() / 255
