"""Plain HTTP answers as values: one shape for an HTTP scope and a refused handshake."""

from __future__ import annotations

from typing import Any

from observable_socket_asgi._responses import Response, header, method_not_allowed, text


async def sent(response: Response, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """The ASGI events `response` sends on `scope`."""
    events: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        events.append(message)

    await response(scope, send)
    return events


async def test_http_answer_is_start_then_one_body() -> None:
    """An http scope gets `http.response.start` (no trailers) then the whole body."""
    start, body = await sent(text(426, "Upgrade Required."), {"type": "http", "method": "GET"})
    assert start["type"] == "http.response.start" and start["status"] == 426
    assert start["trailers"] is False
    assert dict(start["headers"])[b"content-length"] == b"22"
    assert body == {"type": "http.response.body", "body": b"426 Upgrade Required.\n",
                    "more_body": False}  # fmt: skip


async def test_head_gets_the_length_of_get_and_no_body() -> None:
    """HEAD: the same headers as GET, the length of GET's body, and an empty body."""
    response = Response(200, b'{"a": 1}', "application/json")
    start, body = await sent(response, {"type": "http", "method": "HEAD"})
    assert dict(start["headers"])[b"content-length"] == b"8"
    assert dict(start["headers"])[b"content-type"] == b"application/json"
    assert body["body"] == b""


async def test_websocket_scope_is_answered_through_the_denial_extension() -> None:
    """On a handshake the same answer goes out as `websocket.http.response.*`."""
    response = text(503, "Service Unavailable: try again later.", [(b"retry-after", b"7")])
    start, body = await sent(response, {"type": "websocket"})
    assert start["type"] == "websocket.http.response.start" and "trailers" not in start
    assert dict(start["headers"])[b"retry-after"] == b"7"
    assert body["type"] == "websocket.http.response.body"
    assert body["body"] == b"503 Service Unavailable: try again later.\n"


async def test_method_not_allowed_names_the_methods() -> None:
    """A 405 says which methods the path answers."""
    start, body = await sent(method_not_allowed("GET only"), {"type": "http", "method": "POST"})
    assert start["status"] == 405 and dict(start["headers"])[b"allow"] == b"GET, HEAD"
    assert body["body"] == b"405 Method Not Allowed: GET only.\n"


def test_header_reads_the_first_value_or_none() -> None:
    """`header()` finds a lowercase header of the scope (the first), or says there is none."""
    scope = {"headers": [(b"accept", b"text/plain"), (b"accept", b"application/json")]}
    assert header(scope, b"accept") == "text/plain"
    assert header(scope, b"host") is None
    assert header({}, b"host") is None
