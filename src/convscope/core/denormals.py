"""CPU speed: tiny gradients (below ~1e-38) become denormal floats, which CPUs process up to
~100x slower; long optimizations hit them constantly (3x slower steps measured on the default
model). Flushing them to zero changes results by less than 1e-38."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero inside the block (torch's global CPU setting; reset to
    torch's default, off, on exit — torch offers no way to read the previous value)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
