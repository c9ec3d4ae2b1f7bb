"""ASGI scope dispatch: websocket handshakes, the connection registry, lifespan, plain HTTP.

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
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from ._concurrency import Continuation
from .connection import Connection
from .status import CloseCode

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet

    from ._protocol import Settings
    from .routing import SocketRouter
    from .types import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["ConnectionRegistry", "handle", "origin_allowed", "serve_connection"]

logger = logging.getLogger("observable_socket_asgi.asgi")


class ConnectionRegistry:
    """The connections a router serves, and the slots `max_connections` counts.

    Rules (this class alone changes them; only `serve_connection` calls its methods):

        A handshake takes a slot with `reserve()` in the same step as the limit check,
        before any await, so overlapping handshakes (a slow `access_logic`, a slow accept)
        cannot all pass the check; it gives the slot back with `release()` when it ends,
        refused or served. A connection is in `connections` from its accept until its
        `run()` returns: what tests check for leaks.
    """

    __slots__ = ("_connections", "_limit", "_slots_taken")

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        # connections past the limit check and not yet ended, handshakes included
        self._slots_taken = 0
        # accepted connections, not yet ended
        self._connections: set[Connection] = set()

    @property
    def connections(self) -> AbstractSet[Connection]:
        """The live connections (read-only; do not keep it across awaits)."""
        return self._connections

    @property
    def slots_taken(self) -> int:
        """Handshakes in progress plus connections served."""
        return self._slots_taken

    def reserve(self) -> bool:
        """Take a slot if the limit allows; False if `max_connections` are taken."""
        if self._limit is not None and self._slots_taken >= self._limit:
            return False
        self._slots_taken += 1
        return True

    def release(self) -> None:
        """Give back a slot taken by `reserve()`."""
        self._slots_taken -= 1

    def add(self, conn: Connection) -> None:
        """Count `conn` as served; its handshake is complete."""
        self._connections.add(conn)

    def discard(self, conn: Connection) -> None:
        """`conn` has ended."""
        self._connections.discard(conn)


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
    refusal = _refusal(router.settings, conn)
    if refusal is not None:
        code, reason = refusal
        await _refuse(send, code, reason)
        return
    registry = router.registry
    if not registry.reserve():
        logger.warning("refused %s: %d connections open", conn.client, registry.slots_taken)
        await _refuse(send, CloseCode.TRY_AGAIN_LATER, "try again later")
        return
    try:
        access_logic = router.access_logic
        if access_logic is not None:
            timeout = router.settings.handshake_timeout
            try:
                allowed = await _check_access(access_logic, conn.socket, timeout)
            except TimeoutError:
                logger.warning(
                    "access_logic for %s took over %s s: refused, try again later",
                    conn.client,
                    timeout,
                )
                await _refuse(send, CloseCode.TRY_AGAIN_LATER, "handshake timed out")
                return
            except Exception:
                logger.exception("access_logic raised for %s", scope.get("path"))
                await _refuse(send, CloseCode.INTERNAL_ERROR, "internal server error")
                return
            if not allowed:
                await _refuse(send, CloseCode.POLICY_VIOLATION, "access denied")
                return
        await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        registry.add(conn)
        try:
            await conn.run()
        finally:
            registry.discard(conn)
    finally:
        registry.release()


async def _check_access(access_logic: Any, socket: Any, limit: float | None) -> Any:
    """Run `access_logic(socket)` in this task, bounded by `limit` seconds.

    The timer is armed only if the check suspends: most checks (a token compared, a cache
    hit) finish in their first step, and a timer per handshake cost more than such a check.
    The first step runs in this same task and context, as a plain `await` would.

    Raises:
        TimeoutError: the check was still waiting after `limit` seconds.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    coro = access_logic(socket)
    if not isinstance(coro, CoroutineType):  # an awaitable that is not a coroutine
        async with asyncio.timeout(limit):
            return await coro
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        return done.value
    if limit is None:
        return await Continuation(coro, yielded)
    async with asyncio.timeout_at(start + limit):
        return await Continuation(coro, yielded)


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


def _refusal(settings: Settings, conn: Connection) -> tuple[int, str] | None:
    allowed_origins = settings.allowed_origins
    if allowed_origins is not None or settings.require_origin:
        origin = conn.headers.get("origin")
        if origin is None:
            if settings.require_origin:
                logger.warning("refused %s: no Origin header", conn.client)
                return CloseCode.POLICY_VIOLATION, "origin required"
        elif allowed_origins is not None and not origin_allowed(origin, allowed_origins):
            logger.warning("refused %s: origin %r not allowed", conn.client, origin)
            return CloseCode.POLICY_VIOLATION, "origin not allowed"
    return None


async def _refuse(send: ASGISendCallable, code: int, reason: str) -> None:
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
                for fn in router.startup_hooks:
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
                for fn in router.shutdown_hooks:
                    result = fn()
                    if inspect.isawaitable(result):  # also `lambda: engine.connect()`
                        await result
                await router.backplane.stop()
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
