"""Plain HTTP answers as objects: built whole, then sent in one place.

After Starlette's `responses.py`: a `Response` is a value (status, body, headers) that sends
itself, `await Response(...)(scope, send)`. The same object answers an `http` scope and a
WebSocket handshake refused before accept (the `websocket.http.response` extension), so
the 426, the 503 of a refused handshake, the AsyncAPI document and the metrics scrape share
one way of writing `http.response.start`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .types import ASGISendCallable

__all__ = ["TEXT", "Response", "header", "method_not_allowed", "text"]

TEXT = "text/plain; charset=utf-8"


class Response:
    """A complete plain HTTP answer; `await response(scope, send)` sends it.

    A HEAD request gets the headers of GET (its `content-length` too) and no body.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        media_type: str = TEXT,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.headers = [
            (b"content-type", media_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ]

    async def __call__(self, scope: Mapping[str, Any], send: ASGISendCallable) -> None:
        """Send the answer on `scope`: an HTTP response, or a handshake's denial response."""
        # a WebSocket handshake is answered through the denial extension's events
        denial = scope.get("type") == "websocket"
        prefix = "websocket." if denial else ""
        start: dict[str, Any] = {
            "type": prefix + "http.response.start",
            "status": self.status,
            "headers": self.headers,
        }
        if not denial:
            start["trailers"] = False
        body = b"" if scope.get("method") == "HEAD" else self.body
        sender: Any = send  # one shape for both event families; asgiref types them apart
        await sender(start)
        await sender({"type": prefix + "http.response.body", "body": body, "more_body": False})


def text(status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    """A `text/plain` answer: `"<status> <message>\\n"`."""
    return Response(status, f"{status} {message}\n".encode(), TEXT, headers)


def method_not_allowed(what: str) -> Response:
    """The 405 of a path that answers GET (and HEAD) only."""
    return text(405, f"Method Not Allowed: {what}.", [(b"allow", b"GET, HEAD")])


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """The first value of header `name` (lowercase bytes) in `scope`, or None, as
    Starlette's `Headers.get` reads it."""
    for key, raw in scope.get("headers") or ():
        if key == name:
            return str(raw.decode("latin-1"))
    return None
