"""Refusing requests from other sites: the Host and Origin headers must name this server.

A page on another site can make the browser send requests to 127.0.0.1 (and, by DNS
rebinding, make its own name resolve there); such requests carry a foreign Host or Origin
header and are answered 403 before they reach the app.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")


class HostGuard:
    """ASGI middleware allowing only ``hosts`` (host names, any port) in Host and Origin."""

    def __init__(self, app, hosts: tuple[str, ...]) -> None:
        self.app = app
        self.hosts = {host.strip("[]").lower() for host in hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
            problem = self._problem(headers.get("host", ""), headers.get("origin"))
            if problem:
                await _refuse(send, problem)
                return
        await self.app(scope, receive, send)

    def _problem(self, host: str, origin: str | None) -> str | None:
        if _name(f"//{host}") not in self.hosts:
            return f"host {host!r} is not this server's; allowed: {', '.join(sorted(self.hosts))}"
        if origin is not None and origin != "null" and _name(origin) not in self.hosts:
            return f"requests from origin {origin!r} are refused; open the page from this server"
        if origin == "null":
            return "requests from an opaque origin are refused; open the page from this server"
        return None


def _name(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


async def _refuse(send, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
