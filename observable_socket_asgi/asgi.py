"""ASGI scope dispatch: websocket handshakes, lifespan, and a polite refusal of plain HTTP.

A refused WebSocket is accepted and then closed with a code (1008 policy, 1013 try again
later, 1011 server error) rather than rejected with an HTTP status: the JS client reads a
refused handshake as 1006 and retries it five times, but stops after 1008 and 1011.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
from typing import TYPE_CHECKING, Any

from .connection import Connection
from .status import CloseCode

if TYPE_CHECKING:
    from ._observe import Observer
    from .routing import SocketRouter
    from .types import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["handle", "origin_allowed"]

logger = logging.getLogger("observable_socket_asgi.asgi")


async def handle(
    router: SocketRouter, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    """Serve one ASGI scope with `router`."""
    kind = scope["type"]
    if kind == "websocket":
        await _websocket(router, scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(router, receive, send)
    elif kind == "http":
        metrics = router.metrics
        if metrics is not None and _path(scope) == router.metrics_url:
            await metrics.scrape(scope, send)
        else:
            await _upgrade_required(send)
    else:
        raise ValueError(f"unsupported ASGI scope type {kind!r}")


async def serve_connection(
    router: SocketRouter,
    scope: Any,
    receive: ASGIReceiveCallable,
    send: ASGISendCallable,
    socket: Any = None,
) -> None:
    """Run the handshake checks, accept, and serve one connection until it ends.

    Args:
        socket: the object handed to hooks as `ws`; by default `router.socket_for(conn)`.
    """
    conn = Connection(router, scope, receive, send)
    conn.socket = router.socket_for(conn) if socket is None else socket
    observer = router._observer
    refusal = _refusal(router, conn)
    if refusal is not None:
        code, reason, why = refusal
        await _refuse(send, code, reason, observer, why)
        return
    # The slot is taken in the same step as the check, before any await: handshakes that
    # overlap (a slow access_logic, a slow accept) would otherwise all pass the check.
    router._slots_taken += 1
    try:
        if router._access_logic is not None:
            try:
                async with asyncio.timeout(router.handshake_timeout):
                    allowed = await router._access_logic(conn.socket)
            except TimeoutError:
                logger.warning(
                    "access_logic for %s took over %s s: refused, try again later",
                    conn.client,
                    router.handshake_timeout,
                )
                await _refuse(
                    send,
                    CloseCode.TRY_AGAIN_LATER,
                    "handshake timed out",
                    observer,
                    "handshake_timeout",
                )
                return
            except Exception:
                logger.exception("access_logic raised for %s", scope.get("path"))
                await _refuse(
                    send, CloseCode.INTERNAL_ERROR, "internal server error", observer, "error"
                )
                return
            if not allowed:
                await _refuse(send, CloseCode.POLICY_VIOLATION, "access denied", observer, "access")
                return
        await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        router.connections.add(conn)
        if observer is not None:
            observer.connection_accepted()
        try:
            await conn.run()
        finally:
            router.connections.discard(conn)
            if observer is not None:
                observer.connection_closed(conn.close_code)
    finally:
        router._slots_taken -= 1


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Return True if `origin` matches an entry: exact, `"*"`, or a `*.example.com` pattern.

    A `*.` in a pattern stands for one or more whole DNS labels and nothing else, so
    `https://*.example.com` admits `https://a.b.example.com` but not `https://example.com`,
    another scheme or port, or a lookalike such as `https://evil.net/.example.com`. A pattern
    without a scheme (`*.example.com`) admits any scheme.
    """
    origin = origin.strip().lower().rstrip("/")
    for entry in allowed:
        entry = entry.strip().lower().rstrip("/")
        if entry == "*" or entry == origin:
            return True
        if "*." in entry and _origin_pattern(entry).fullmatch(origin):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _origin_pattern(entry: str) -> re.Pattern[str]:
    # Only `*.` is special; everything else in the entry is literal (no fnmatch classes).
    pattern = re.escape(entry).replace(re.escape("*."), r"(?:[a-z0-9_-]+\.)+")
    if "://" not in entry:
        pattern = r"[a-z][a-z0-9+.-]*://" + pattern
    return re.compile(pattern)


async def _websocket(
    router: SocketRouter, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left before the handshake completed
    await serve_connection(router, scope, receive, send)


def _path(scope: Scope) -> str:
    """The request path below the application's mount point (`root_path`)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def _refusal(router: SocketRouter, conn: Connection) -> tuple[int, str, str] | None:
    """Why a handshake is refused before access_logic: (close code, reason, observer's why)."""
    if router.allowed_origins is not None or router.require_origin:
        origin = conn.headers.get("origin")
        if origin is None:
            if router.require_origin:
                logger.warning("refused %s: no Origin header", conn.client)
                return CloseCode.POLICY_VIOLATION, "origin required", "origin"
        elif router.allowed_origins is not None and not origin_allowed(
            origin, router.allowed_origins
        ):
            logger.warning("refused %s: origin %r not allowed", conn.client, origin)
            return CloseCode.POLICY_VIOLATION, "origin not allowed", "origin"
    if router.max_connections is not None and router._slots_taken >= router.max_connections:
        logger.warning("refused %s: %d connections open", conn.client, router._slots_taken)
        return CloseCode.TRY_AGAIN_LATER, "try again later", "capacity"
    return None


async def _refuse(
    send: ASGISendCallable, code: int, reason: str, observer: Observer | None, why: str
) -> None:
    if observer is not None:
        observer.connection_refused(why)
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    await send({"type": "websocket.close", "code": code, "reason": reason})


async def _lifespan(
    router: SocketRouter, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await router.backplane.start()
                for fn in router._startup:
                    result = fn()
                    if inspect.isawaitable(result):  # also `lambda: engine.connect()`
                        await result
            except Exception as exc:
                logger.exception("startup hook failed")
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                for fn in router._shutdown:
                    result = fn()
                    if inspect.isawaitable(result):  # also `lambda: engine.connect()`
                        await result
                await router.backplane.stop()
                if router._observer is not None:
                    router._observer.shutdown()
            except Exception as exc:
                logger.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _upgrade_required(send: ASGISendCallable) -> None:
    body = b"426 Upgrade Required: this endpoint speaks WebSocket only.\n"
    await send(
        {
            "type": "http.response.start",
            "status": 426,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
            ],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
