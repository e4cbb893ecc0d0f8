"""Refusing requests from other sites: the Host and Origin headers must name this server.

A page on another site can make the browser send requests to 127.0.0.1 (and, by DNS
rebinding, make its own name resolve there); such requests carry a foreign Host or Origin
header and are answered 403 before they reach the app.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from convscope.errors import shorten

LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                                               "media-src 'self' blob:; object-src 'none'; frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
#: A Host header: a name or IPv4 address, or a bracketed IPv6 address, then an optional port
#: (nothing else: no user part such as ``evil.com@``, no path).
_HOST = re.compile(r"(?P<name>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")


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
                await refuse(send, 403, problem)
                return
        await self.app(scope, receive, send)

    def _problem(self, host: str, origin: str | None) -> str | None:
        match = _HOST.fullmatch(host)
        if match is None or match["name"].strip("[]").lower() not in self.hosts:
            return f"host {shorten(host)!r} is not this server's; allowed: {', '.join(sorted(self.hosts))}"
        if origin == "null":
            return "requests from an opaque origin are refused; open the page from this server"
        if origin is not None and _name(origin) not in self.hosts:
            return f"requests from origin {shorten(origin)!r} are refused; open the page from this server"
        return None


def _name(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return "" if "@" in parts.netloc else (parts.hostname or "").lower()


async def refuse(send, status: int, message: str) -> None:
    """Answers ``status`` with ``{"detail": message}`` and the security headers, from middleware."""
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
