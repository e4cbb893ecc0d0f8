"""Bounding every request body in size and time, before any route sees it.

Each body is read here in full: refused with 413 as soon as it is larger than its route allows
(by its declared length, or while it arrives), with 408 when it takes longer than the time
allowed, and then handed to the app from memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from convscope.web.guard import refuse


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: request bodies of at most ``limit(path)`` bytes, read within ``seconds``."""

    def __init__(self, app, limit: Callable[[str], int], *, seconds: float) -> None:
        self.app, self.limit, self.seconds = app, limit, seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await refuse(send, 413, _too_large(limit, int(declared)))
            return
        try:
            body = await asyncio.wait_for(_read(receive, limit), self.seconds)
        except _TooLarge:
            await refuse(send, 413, _too_large(limit))
            return
        except asyncio.TimeoutError:
            await refuse(send, 408, f"the request body did not arrive within {self.seconds:.0f} s")
            return
        if body is None:  # the client went away
            return
        await self.app(scope, _replay(body, receive), send)


async def _read(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that gives the app the whole body once, then waits on the client as usual."""
    given = False

    async def replayed():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replayed


def _too_large(limit: int, declared: int | None = None) -> str:
    size = "" if declared is None else f" ({_amount(declared)})"
    return f"the request body is too large{size}; at most {_amount(limit)} are accepted here"


def _amount(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
