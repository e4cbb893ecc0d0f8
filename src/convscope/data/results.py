"""Results of a pass over a dataset, written chunk by chunk so that a stopped run resumes.

A run's folder holds ``manifest.json`` (what is computed: model, layer, dataset, chunk size ...)
and ``chunks/NNNNNN.npz``, one file per finished chunk, each written atomically. A restarted
run skips the chunks already there; a folder holding a different run is refused. While a chunk
is computed, ``chunks/NNNNNN.running`` says so: one left behind tells the next run that a process
died on that chunk (a crash in native code, a kill), which it reports before computing it again.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from convscope.core.render import save_array, save_json
from convscope.data.distributed import Ranks
from convscope.data.loader import Failure
from convscope.errors import ConvscopeError


class ChunkStore:
    """The chunk files of one run.

    Args:
        folder: the run's folder (created when missing).
        manifest: JSON-friendly description of the run; must equal the one already there.
        count: dataset size.
        chunk_size: images per chunk.
        ranks: the process group (rank 0 writes the manifest).
    """

    def __init__(self, folder: str | Path, manifest: dict, *, count: int, chunk_size: int, ranks: Ranks) -> None:
        self.folder = Path(folder)
        self.chunk_size = chunk_size
        self.chunks = math.ceil(count / chunk_size)
        manifest = {**manifest, "count": count, "chunk_size": chunk_size}
        if ranks.main:
            _prepare(self.folder, manifest)
        ranks.barrier()
        _check(self.folder, manifest)

    def path(self, chunk: int) -> Path:
        return self.folder / "chunks" / f"{chunk:06d}.npz"

    def pending(self) -> list[int]:
        """Chunks not yet written, in order."""
        return [chunk for chunk in range(self.chunks) if not self.path(chunk).exists()]

    def begin(self, chunk: int) -> None:
        """Marks a chunk as being computed (until :meth:`save`)."""
        self.path(chunk).with_suffix(".running").write_text(json.dumps({"pid": os.getpid(), "started": time.time()}))

    def died_on(self) -> list[int]:
        """Chunks that an earlier process began and never saved (call before this run begins any)."""
        return sorted(int(marker.stem) for marker in (self.folder / "chunks").glob("*.running")
                      if not self.path(int(marker.stem)).exists())

    def save(self, chunk: int, arrays: dict[str, np.ndarray], failures: list[Failure]) -> None:
        """Writes one chunk's arrays and unreadable images, atomically."""
        save_array(self.path(chunk), **arrays, failures=np.array(json.dumps([f.as_dict() for f in failures])))
        self.path(chunk).with_suffix(".running").unlink(missing_ok=True)

    def load(self, chunk: int) -> dict[str, np.ndarray]:
        """One chunk's arrays (without the failures)."""
        with np.load(self.path(chunk), allow_pickle=False) as data:
            return {name: data[name] for name in data.files if name != "failures"}

    def failures(self) -> list[Failure]:
        """Every unreadable image of the run, by index."""
        found = []
        for chunk in range(self.chunks):
            with np.load(self.path(chunk), allow_pickle=False) as data:
                found.extend(Failure(**item) for item in json.loads(str(data["failures"])))
        return found


def _prepare(folder: Path, manifest: dict) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConvscopeError(f"{folder}: exists and is not a folder; give a folder for the results")
    (folder / "chunks").mkdir(parents=True, exist_ok=True)
    if not (folder / "manifest.json").exists():
        save_json(folder / "manifest.json", manifest)


def _check(folder: Path, manifest: dict) -> None:
    found = json.loads((folder / "manifest.json").read_text())
    differ = sorted(key for key in {*found, *manifest} if found.get(key) != manifest.get(key))
    if differ:
        shown = ", ".join(f"{key}: {found.get(key)!r} there, {manifest.get(key)!r} now" for key in differ)
        raise ConvscopeError(f"{folder} holds a different run ({shown}); use a new folder, "
                             f"or delete it to start over")
