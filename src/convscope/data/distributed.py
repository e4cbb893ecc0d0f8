"""Running one command as several processes, on one machine or many, with torchrun.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`process_group` joins the
group (NCCL between GPUs, gloo on CPUs) and says which rank this process is. Work is split by
chunks (see :mod:`convscope.data.results`), so no rank ever waits for another until the merge.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: ``rank`` of ``world`` (0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """True on the rank that merges results and writes pictures."""
        return self.rank == 0

    def barrier(self) -> None:
        """Waits until every rank gets here."""
        if self.world > 1:
            dist.barrier()

    def share(self, items: list) -> list:
        """This rank's part of ``items`` (every ``world``-th one, starting at ``rank``)."""
        return items[self.rank::self.world]


@contextmanager
def process_group(device: str = "auto") -> Iterator[Ranks]:
    """Joins the torchrun group when there is one; alone otherwise.

    Under torchrun with CUDA (``device`` auto or cuda), each process takes the GPU of its
    ``LOCAL_RANK`` and the group talks over NCCL; otherwise over gloo. A group that the
    caller already started is used as it is and left open.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield Ranks()
        return
    if dist.is_initialized():
        yield Ranks(dist.get_rank(), dist.get_world_size())
        return
    nccl = device in ("auto", "cuda") and torch.cuda.is_available() and dist.is_nccl_available()
    if nccl:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if nccl else "gloo")
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()
