"""Answering many concurrent requests with few forward passes.

A request that arrives while a batch is running waits; when that batch is done, everything
that piled up meanwhile runs as the next batch (up to ``limit``). One request alone is not
delayed; fifty at once take a few batched forward passes instead of fifty single ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

import torch


class Batcher:
    """Calls ``run(batch)`` with ``(B, ...)`` stacked inputs; returns each caller its own row.

    Args:
        run: ``(B, ...)`` -> ``(B, ...)`` (e.g. images -> class probabilities).
        limit: the most inputs in one batch.
    """

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], *, limit: int = 32) -> None:
        self.run, self.limit = run, limit
        self._pending: list[tuple[torch.Tensor, Future]] = []
        self._lock = threading.Lock()
        self._running = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(1, ...)`` -> its ``(1, ...)`` row of ``run`` over the batch it joined."""
        future: Future = Future()
        with self._lock:
            self._pending.append((x, future))
            lead, self._running = not self._running, True
        if lead:
            self._drain()
        return future.result()

    def _drain(self) -> None:
        """Runs batches until nothing is pending (on the thread of the request that found none running)."""
        while True:
            with self._lock:
                batch, self._pending = self._pending[:self.limit], self._pending[self.limit:]
                if not batch:
                    self._running = False
                    return
            try:
                out = self.run(torch.cat([x for x, _ in batch]))
                for row, (_, future) in enumerate(batch):
                    future.set_result(out[row:row + 1])
            except Exception as error:  # noqa: BLE001 - every waiting request gets the error
                for _, future in batch:
                    future.set_exception(error)
