"""Heavy work (DeepDream, style, inversion, attacks, visualizations, attributions) as jobs.

Jobs wait in a bounded queue and run on a few worker threads, each with its own copy of the
model, so light requests (predictions, activations) keep being answered on the shared one.
A job reports progress and intermediate frames through :meth:`Job.report`, which is also where
a cancel or the per-job time limit stops it (by raising :class:`Stopped` inside the loop).
"""

from __future__ import annotations

import copy
import io
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from convscope.core.render import Picture, picture
from convscope.errors import ConvscopeError, shorten
from convscope.models.model import Model

log = logging.getLogger("convscope.web")
#: At most this many frames are kept per job (the first and the latest ones).
MAX_FRAMES = 48
FINISHED = ("done", "failed", "cancelled")


class Stopped(Exception):
    """Raised inside a job's loop when it is cancelled or out of time."""


class QueueFull(ConvscopeError):
    """Every worker is busy and the waiting line is full."""


class UnknownJob(ConvscopeError):
    """No job has this id (never made, or forgotten)."""


@dataclass(eq=False)
class Job:
    """One heavy request: its state, progress (0..1), frames (PNG bytes), final message, and its
    result's caption, numbers and raw array (``.npy`` bytes) once done."""

    kind: str
    run: Callable[[Model, Job], Picture]
    seconds: float
    id: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    state: str = "queued"
    progress: float = 0.0
    message: str = ""
    frames: list[bytes] = field(default_factory=list)
    frame_count: int = 0
    deadline: float = 0.0
    cancelled: threading.Event = field(default_factory=threading.Event)
    caption: str = ""
    numbers: dict = field(default_factory=dict)
    array: bytes | None = None

    def report(self, progress: float, frame: torch.Tensor | Picture | None = None) -> None:
        """Records progress and, optionally, a frame (``(3, H, W)``/``(1, 3, H, W)`` or a Picture).

        Raises:
            Stopped: the job was cancelled or has run past its time limit.
        """
        self.check()
        self.progress = max(self.progress, min(1.0, float(progress)))
        if frame is not None:
            self._add_frame(frame if isinstance(frame, Picture) else picture(frame[0] if frame.dim() == 4 else frame))

    def check(self) -> None:
        """Raises :class:`Stopped` when the job was cancelled or has run past its time limit."""
        if self.cancelled.is_set():
            raise Stopped("cancelled")
        if time.monotonic() > self.deadline:
            raise Stopped(f"stopped after its time limit of {self.seconds:.0f} s")

    def keep(self, array: torch.Tensor | np.ndarray) -> None:
        """Keeps the raw values behind the result (a map, an image), offered for download as ``.npy``."""
        buffer = io.BytesIO()
        np.save(buffer, array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array)
        self.array = buffer.getvalue()

    def finish(self, result: Picture) -> None:
        self._add_frame(result)
        self.caption, self.numbers = result.caption, _plain(result.numbers)
        self.progress, self.state = 1.0, "done"

    def _add_frame(self, shown: Picture) -> None:
        if len(self.frames) >= MAX_FRAMES:
            self.frames.pop(1)  # keep the first frame, drop the oldest after it
        self.frames.append(shown._repr_png_())
        self.frame_count += 1

    def frame(self, number: int) -> bytes:
        """PNG bytes of frame ``number`` (0-based, counting every frame ever reported);
        -1 is the latest."""
        if number == -1 and self.frames:
            return self.frames[-1]
        index = number if number == 0 else number - (self.frame_count - len(self.frames))
        if not 0 <= number < self.frame_count or not (index == 0 if number == 0 else 1 <= index < len(self.frames)):
            raise KeyError(number)
        return self.frames[index]

    def status(self) -> dict:
        return {"id": self.id, "kind": self.kind, "state": self.state, "progress": round(self.progress, 4),
                "frames": self.frame_count, "message": self.message, "caption": self.caption,
                "numbers": self.numbers, "array": self.array is not None}


def _plain(numbers: dict) -> dict:
    """The numbers that are JSON scalars or short lists of them (long arrays stay in the download)."""
    def plain(value):
        return isinstance(value, (bool, int, float, str)) or value is None
    kept = {}
    for key, value in numbers.items():
        if isinstance(value, (np.generic, torch.Tensor)) and np.size(value) == 1:
            value = value.item()
        if plain(value) or (isinstance(value, (list, tuple)) and len(value) <= 16 and all(map(plain, value))):
            kept[str(key)] = None if isinstance(value, float) and not math.isfinite(value) else value
    return kept


class JobQueue:
    """Runs jobs on ``workers`` threads with their own model copies; ``capacity`` may wait.

    Args:
        model: the model; each worker deep-copies it once.
        workers: jobs that run at the same time.
        capacity: jobs that may wait for a worker; more are refused with :class:`QueueFull`.
        seconds: time limit of each job, from when it starts.
        kept: finished jobs remembered (the oldest are forgotten).
    """

    def __init__(self, model: Model, *, workers: int = 2, capacity: int = 4, seconds: float = 300,
                 kept: int = 64) -> None:
        self.seconds, self.kept, self.capacity = seconds, kept, capacity
        self._waiting: deque[Job | None] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Condition()
        self._threads = [threading.Thread(target=self._work, args=(copy.deepcopy(model),), daemon=True,
                                          name=f"convscope-job-{i}") for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, kind: str, run: Callable[[Model, Job], Picture]) -> Job:
        """Queues ``run(model_copy, job)``, whose returned Picture becomes the last frame.

        Raises:
            QueueFull: too many jobs are waiting.
        """
        job = Job(kind, run, self.seconds)
        with self._lock:
            if len(self._waiting) >= self.capacity:
                raise QueueFull(f"the server is busy: {self.capacity} jobs are waiting; try again when one has "
                                f"finished")
            self._waiting.append(job)
            self._jobs[job.id] = job
            finished = [key for key, old in self._jobs.items() if old.state in FINISHED]
            for key in finished[:max(0, len(self._jobs) - self.kept)]:
                del self._jobs[key]
            self._lock.notify()
        return job

    def get(self, key: str) -> Job:
        with self._lock:
            if key not in self._jobs:
                raise UnknownJob(f"no job {shorten(key)!r}; it never existed or is long finished")
            return self._jobs[key]

    def cancel(self, key: str) -> Job:
        """Stops the job at its next report; a job still waiting leaves the line at once."""
        job = self.get(key)
        job.cancelled.set()
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                job.state, job.message = "cancelled", "cancelled before it started"
        return job

    def close(self, timeout: float = 30) -> None:
        """Cancels every job and waits for the workers to stop."""
        with self._lock:
            for job in self._jobs.values():
                job.cancelled.set()
            self._waiting.clear()
            self._waiting.extend([None] * len(self._threads))
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _next(self) -> Job | None:
        with self._lock:
            while not self._waiting:
                self._lock.wait()
            job = self._waiting.popleft()
            if job is not None:
                job.state, job.deadline = "running", time.monotonic() + job.seconds
            return job

    def _work(self, model: Model) -> None:
        while (job := self._next()) is not None:
            # every forward pass checks for a cancel, so a method without a callback stops too
            watch = model.net.register_forward_pre_hook(lambda module, args, job=job: job.check())
            try:
                job.finish(job.run(model, job))
            except Stopped as reason:
                job.state, job.message = "cancelled", str(reason)
            except ConvscopeError as error:
                job.state, job.message = "failed", str(error)
            except Exception as error:  # noqa: BLE001 - a bug must not kill the worker
                log.exception("job %s (%s) failed", job.id, job.kind)
                job.state, job.message = "failed", f"internal error: {type(error).__name__}"
            finally:
                watch.remove()
