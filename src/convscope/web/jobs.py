"""Heavy work (DeepDream, style, inversion, attacks, visualizations, attributions) as jobs.

Jobs wait in a bounded queue and run one at a time in each of a few worker processes, each with
its own copy of the model, so light requests (predictions, activations) keep being answered on
the shared one, and a job that crashes in native code (users bring networks no one has tried)
takes down its worker only: the job fails with one line, and a new worker starts for the next
job. A thread of the server supervises each worker: it relays the job's progress, frames and
result, and stops it when cancelled or out of time (cooperatively, at its next report or
forward pass; a worker that does not stop in :data:`GRACE` seconds is killed). A model that
cannot be sent to another process runs its jobs on the threads themselves (logged).

A job is described by a *recipe*: a picklable function of no arguments (a ``functools.partial``
of one of :mod:`convscope.web.tasks`' builders) that returns ``run(model, job)``. The job reports
progress and frames through ``job.report``, which is also where a cancel or the time limit stops
it (by raising :class:`Stopped`), and keeps its raw result with ``job.keep``.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import multiprocessing
import pickle
import re
import secrets
import signal
import threading
import time
import traceback
import zipfile
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
#: Seconds a worker has to stop a cancelled job before it is killed (and another started): a
#: forward pass, or a backward pass (which no hook interrupts), rarely takes longer.
GRACE = 2.0
Recipe = Callable[[], Callable[[Model, "Job"], Picture]]


class Stopped(BaseException):
    """Raised inside a job's loop when it is cancelled or out of time. Not an ``Exception``, like
    ``KeyboardInterrupt``: code that tries one way and then another on any error (a network that
    refuses a size, the fast paths' self-check) must not take a stop for such an error."""


class QueueFull(ConvscopeError):
    """Every worker is busy and the waiting line is full."""


class UnknownJob(ConvscopeError):
    """No job has this id (never made, or forgotten)."""


@dataclass(eq=False)
class Job:
    """One heavy request: its state, progress (0..1), frames (PNG bytes), final message, and its
    result's caption, numbers and raw array (``.npy`` bytes) once done."""

    kind: str
    recipe: Recipe
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
    settings: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A file name for its downloads: the tool, then what it was asked (method, target, style,
        layer, channel), then the job's id."""
        asked = [self.settings.get(key) for key in ("method", "target", "style", "layer", "channel")]
        words = [self.kind, *(str(value) for value in asked if value not in (None, ""))]
        return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(words))[:80] + f"-{self.id[:6]}"

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
        self.array = _npy(array)

    def finish(self, result: Picture) -> None:
        self.finish_as(result.caption, result.numbers, result._repr_png_())

    def finish_as(self, caption: str, numbers: dict, png: bytes) -> None:
        """Done, with the result's caption, numbers and picture (PNG bytes)."""
        self.add_png(png)
        self.caption, self.numbers = caption, _plain(numbers)
        self.progress, self.state = 1.0, "done"

    def advance(self, progress: float, png: bytes | None = None) -> None:
        """Records progress and a frame as a worker process reported them."""
        self.progress = max(self.progress, min(1.0, float(progress)))
        if png is not None:
            self.add_png(png)

    def _add_frame(self, shown: Picture) -> None:
        self.add_png(shown._repr_png_())

    def add_png(self, png: bytes) -> None:
        if len(self.frames) >= MAX_FRAMES:
            self.frames.pop(1)  # keep the first frame, drop the oldest after it
        self.frames.append(png)
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
        return {"id": self.id, "kind": self.kind, "name": self.name, "state": self.state,
                "progress": round(self.progress, 4), "frames": self.frame_count, "message": self.message,
                "caption": self.caption, "numbers": self.numbers, "array": self.array is not None}

    def archived(self, archive: zipfile.ZipFile) -> None:
        """Writes its picture, the values behind it and a JSON of what was asked and found, each
        named :attr:`name`, into ``archive``."""
        if self.frames:
            archive.writestr(f"{self.name}.png", self.frames[-1])
        if self.array is not None:
            archive.writestr(f"{self.name}.npy", self.array)
        archive.writestr(f"{self.name}.json", json.dumps({"kind": self.kind, "settings": self.settings,
                                                          "caption": self.caption, "numbers": self.numbers}, indent=1))


def _npy(array: torch.Tensor | np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array)
    return buffer.getvalue()


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
    """Runs jobs in ``workers`` processes (or threads) with their own model copies; ``capacity`` may wait.

    Args:
        model: the model; each worker gets its own copy.
        workers: jobs that run at the same time.
        capacity: jobs that may wait for a worker; more are refused with :class:`QueueFull`.
        seconds: time limit of each job, from when it starts.
        kept: finished jobs remembered (the oldest are forgotten).
        processes: run jobs in worker processes (the default; threads when False or when the
            model cannot be sent to another process).
    """

    def __init__(self, model: Model, *, workers: int = 2, capacity: int = 4, seconds: float = 300,
                 kept: int = 64, processes: bool = True) -> None:
        self.seconds, self.kept, self.capacity = seconds, kept, capacity
        self._waiting: deque[Job | None] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Condition()
        packed = _packed(model) if processes else None
        self._runners = [_Process(packed) if packed is not None else _Thread(copy.deepcopy(model))
                         for _ in range(workers)]
        self._threads = [threading.Thread(target=self._work, args=(runner,), daemon=True, name=f"convscope-job-{i}")
                         for i, runner in enumerate(self._runners)]
        for thread in self._threads:
            thread.start()

    def submit(self, kind: str, recipe: Recipe, settings: dict | None = None) -> Job:
        """Queues the job that ``recipe()`` makes, ``run(model_copy, job)``, whose returned Picture
        becomes the last frame; ``settings``: what was asked, kept for its downloads.

        Raises:
            QueueFull: too many jobs are waiting.
        """
        job = Job(kind, recipe, self.seconds, settings=dict(settings or {}))
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
        for runner in self._runners:
            runner.close()

    def _next(self) -> Job | None:
        with self._lock:
            while not self._waiting:
                self._lock.wait()
            job = self._waiting.popleft()
            if job is not None:
                job.state, job.deadline = "running", time.monotonic() + job.seconds
            return job

    def _work(self, runner: _Thread | _Process) -> None:
        while (job := self._next()) is not None:
            try:
                runner.run(job)
            except Stopped as reason:
                job.state, job.message = "cancelled", str(reason)
            except ConvscopeError as error:
                job.state, job.message = "failed", str(error)
            except Exception as error:  # noqa: BLE001 - a bug must not kill the worker
                log.exception("job %s (%s) failed", job.id, job.kind)
                job.state, job.message = "failed", f"internal error: {type(error).__name__}"


class _Thread:
    """Runs jobs on the supervising thread itself, on its own copy of the model."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def run(self, job: Job) -> None:
        # every forward pass checks for a cancel, so a method without a callback stops too
        watch = self.model.net.register_forward_pre_hook(lambda module, args: job.check())
        try:
            job.finish(job.recipe()(self.model, job))
        finally:
            watch.remove()

    def close(self) -> None:
        pass


class _Process:
    """A worker process, started when the first job comes and again after one dies; the thread that
    calls :meth:`run` relays what the process reports into the job."""

    def __init__(self, packed: bytes) -> None:
        self.packed = packed
        self.context = multiprocessing.get_context("spawn")  # not fork: a forked child of a process
        self.process = None                                   # that ran OpenMP hangs in its first matmul
        self.connection = None
        self.stop = self.context.Event()
        self.starting: threading.Thread | None = None  # the thread starting the process, once there was one

    def run(self, job: Job) -> None:
        self._await_worker(job)
        self.stop.clear()
        self.connection.send(job.recipe)
        stopping = None  # when the stop was asked
        while True:
            if stopping is None and (job.cancelled.is_set() or time.monotonic() > job.deadline):
                self.stop.set()
                stopping = time.monotonic()
            if stopping is not None and time.monotonic() > stopping + GRACE:
                self._kill()
                raise Stopped(_stop_reason(job))
            try:
                if not self.connection.poll(0.05):
                    if not self.process.is_alive():
                        raise EOFError
                    continue
                message = self.connection.recv()
            except (EOFError, OSError):
                code = self._reap()
                raise ConvscopeError(f"the job's worker process died ({_exit(code)}), most likely a crash in the "
                                     f"network's native code; the server is still up and starts a new worker")
            if self._relay(job, message):
                return

    def _relay(self, job: Job, message: tuple) -> bool:
        """Applies one message to the job; whether it was the last."""
        kind, *rest = message
        if kind == "progress":
            job.advance(*rest)
        elif kind == "array":
            job.array = rest[0]
        elif kind == "done":
            job.finish_as(*rest)
        elif kind == "stopped":
            raise Stopped(_stop_reason(job))
        elif kind == "failed":
            raise ConvscopeError(rest[0])
        elif kind == "error":
            log.error("job %s (%s) failed in its worker:\n%s", job.id, job.kind, rest[1])
            job.state, job.message = "failed", f"internal error: {rest[0]}"
        return kind in ("done", "error")

    def _await_worker(self, job: Job) -> None:
        """Returns once the worker process is up, starting one if there is none. Starting takes
        seconds (the child imports torch before it reads the model), so it runs on its own thread, and
        a stop asked meanwhile is answered at once while the start goes on for the next job."""
        if not self._starting() and (self.process is None or not self.process.is_alive()):
            self.starting = threading.Thread(target=self._start, daemon=True, name="convscope-worker-start")
            self.starting.start()
        job.message = "starting a worker process"
        while self._starting():
            if job.cancelled.is_set() or time.monotonic() > job.deadline:
                raise Stopped(_stop_reason(job))
            self.starting.join(0.05)
        job.message = ""
        if self.process is None:
            raise ConvscopeError("the job's worker process could not start (see the server's log)")

    def _start(self) -> None:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_serve, args=(child, self.packed, self.stop), daemon=True,
                                       name="convscope-worker")
        try:
            process.start()  # blocks until the child has read the model
        except Exception:  # noqa: BLE001 - reported to the job by _await_worker
            log.exception("a worker process could not start")
            return
        finally:
            child.close()
        self.process, self.connection = process, parent

    def _kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self._reap()

    def _reap(self) -> int | None:
        self.process.join(5)
        code = self.process.exitcode
        self.connection.close()
        self.process = self.connection = None
        return code

    def _starting(self) -> bool:
        return self.starting is not None and self.starting.is_alive()

    def close(self) -> None:
        if self.starting is not None:
            self.starting.join(30)
        self._kill()


def _stop_reason(job: Job) -> str:
    return "cancelled" if job.cancelled.is_set() else f"stopped after its time limit of {job.seconds:.0f} s"


def _exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            pass
    return f"exit status {code}"


def _packed(model: Model) -> bytes | None:
    """The model as bytes a worker process can load, or None (logged) where it cannot be sent."""
    try:
        return pickle.dumps(model)
    except Exception as error:  # a network holding a lock, a class defined in a function, ...
        log.warning("jobs run in threads: the model cannot be sent to a worker process (%s)", shorten(str(error)))
        return None


class _Relay:
    """The job as the worker process sees it: reports go to the supervising thread; a stop that
    thread asks for is raised as :class:`Stopped` at the next report or forward pass."""

    def __init__(self, connection, stop) -> None:
        self.connection, self.stop = connection, stop

    def check(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopped")

    def report(self, progress: float, frame: torch.Tensor | Picture | None = None) -> None:
        self.check()
        if frame is not None and not isinstance(frame, Picture):
            frame = picture(frame[0] if frame.dim() == 4 else frame)
        self.connection.send(("progress", float(progress), None if frame is None else frame._repr_png_()))

    def keep(self, array: torch.Tensor | np.ndarray) -> None:
        self.connection.send(("array", _npy(array)))


def _serve(connection, packed: bytes, stop) -> None:
    """The worker process: loads the model, then runs each recipe it is sent, one at a time."""
    model = pickle.loads(packed)  # noqa: S301 - bytes made by this server from its own model
    relay = _Relay(connection, stop)
    watch = model.net.register_forward_pre_hook(lambda module, args: relay.check())
    try:
        while True:
            try:
                recipe = connection.recv()
            except EOFError:
                return
            connection.send(_outcome(recipe, model, relay))
    finally:
        watch.remove()


def _outcome(recipe: Recipe, model: Model, relay: _Relay) -> tuple:
    try:
        result = recipe()(model, relay)
        return ("done", result.caption, result.numbers, result._repr_png_())
    except Stopped:
        return ("stopped",)
    except ConvscopeError as error:
        return ("failed", str(error))
    except Exception as error:  # noqa: BLE001 - reported to the server, which logs it
        return ("error", type(error).__name__, traceback.format_exc())
