"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """The best wall-clock time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, *, rewarm: bool = False) -> dict[str, float]:
    """The best wall-clock time of each function, calling them in turn ``repeats`` times after one
    warm-up round, so that a slow spell of a shared machine hits all of them alike.

    ``rewarm``: call each function once more, untimed, right before each timed call, so that
    what the previous function left behind (freed memory, caches) does not fall on it.
    """
    best = dict.fromkeys(fns, float("inf"))
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            if rewarm:
                fn()
            started = time.perf_counter()
            fn()
            if round_:
                best[name] = min(best[name], time.perf_counter() - started)
    return best
