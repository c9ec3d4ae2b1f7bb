"""ASGI scope dispatch: websocket handshakes, the connection registry, lifespan, plain HTTP.

The close policy, written for the JS client's rules (it never reconnects after 1008 or
1011; after any other close it reconnects at once, its attempt counter reset by the open;
a handshake refused before any open is retried after 1, 2, 4, 8 and 15 s, then given up):

    "come back later"   over `max_connections`, over `handshake_rate`, `access_logic`
                        raised or ran past `handshake_timeout`: refused BEFORE accept, so
                        the client backs off instead of reconnecting every second. Where
                        the server offers the `websocket.http.response` extension (uvicorn
                        does) the refusal is an HTTP 503 with `Retry-After`; elsewhere a
                        close before accept (the server answers HTTP 403).
    "never come back"   origin not allowed, `access_logic` returned False: accept, then
                        close 1008 with a short reason; the user must act.
    never 1011          for anything transient: it strands the browser tab until reload.

Every refusal is logged once, at warning level, with the client's address and the reason.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import random
import re
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .._concurrency import Continuation
from .._protocol import Bucket
from ..logs import peer
from ..status import CloseCode
from .connection import Connection

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet

    from ..observe._observe import Observer
    from ..options import Settings
    from ..types import ASGIReceiveCallable, ASGISendCallable, Scope
    from .routing import SocketRouter

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

    __slots__ = ("_connections", "_handshakes", "_limit", "_rate", "_slots_taken")

    def __init__(self, limit: int | None, handshake_rate: tuple[int, float] | None = None) -> None:
        self._limit = limit
        # `(handshakes, per_seconds)`; its bucket is made on the first handshake
        self._rate = handshake_rate
        self._handshakes: Bucket | None = None
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

    def admit(self, now: float) -> bool:
        """Spend a token of `handshake_rate`; False when the window's handshakes are spent."""
        rate = self._rate
        if rate is None:
            return True
        bucket = self._handshakes
        if bucket is None:
            bucket = self._handshakes = Bucket(rate[0], rate[1], now)
        return bucket.take(now)

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
        metrics = router.metrics
        # the same path rule as the AsyncAPI document's, with or without the root_path
        if metrics is not None and _is_asyncapi_path(router.metrics_url or "", scope):
            await metrics.scrape(scope, send)
        elif router.asyncapi_url is not None and _is_asyncapi_path(router.asyncapi_url, scope):
            await _asyncapi(router, scope, send)
        elif router.explorer is not None and router.explorer.owns(scope):
            await router.explorer.serve(scope, send)
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
    accepted: bool = False,
) -> None:
    """Run the handshake checks, accept, and serve one connection until it ends.

    Args:
        socket: the object handed to hooks as `ws`; by default the runtime's `make_ws`.
        accepted: the handshake was already accepted (an endpoint called `ws.accept()`):
            a refusal to retry can then only be a close 1013.
    """
    conn = Connection(router.runtime, scope, receive, send)
    if socket is not None:
        conn.ws = socket
    settings = router.settings
    observer = router.observer
    refusal = _refusal(settings, conn)
    if refusal is not None:
        code, reason = refusal
        await _refuse(send, code, reason, observer, "origin")
        return
    registry = router.registry
    if not registry.reserve():
        _log_refusal(conn, "max_connections (%d) reached", registry.slots_taken)
        await _deny(send, scope, settings.retry_after, accepted, observer, "capacity")
        return
    try:
        if not registry.admit(asyncio.get_running_loop().time()):
            _log_refusal(conn, "over handshake_rate %s", settings.handshake_rate)
            await _deny(send, scope, settings.retry_after, accepted, observer, "capacity")
            return
        access_logic = router.access_logic
        if access_logic is not None:
            timeout = settings.handshake_timeout
            try:
                allowed = await _check_access(access_logic, conn.ws, timeout)
            except TimeoutError:
                _log_refusal(conn, "access_logic took over %s s, try again later", timeout)
                await _deny(
                    send, scope, settings.retry_after, accepted, observer, "handshake_timeout"
                )
                return
            except Exception:
                # a transient fault (a database briefly down) until shown otherwise: the
                # client is told to come back, never 1011
                _log_refusal(conn, "access_logic raised, try again later", exc_info=True)
                await _deny(send, scope, settings.retry_after, accepted, observer, "error")
                return
            if not allowed:
                _log_refusal(conn, "access_logic said no")
                await _refuse(send, CloseCode.POLICY_VIOLATION, "access denied", observer, "access")
                return
        await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        registry.add(conn)
        if observer is not None:
            observer.connection_accepted()
        try:
            await conn.run()
        finally:
            registry.discard(conn)
            if observer is not None:
                observer.connection_closed(conn.close_code)
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
        origin = conn.socket.headers.get("origin")
        if origin is None:
            if settings.require_origin:
                _log_refusal(conn, "no Origin header")
                return CloseCode.POLICY_VIOLATION, "origin required"
        elif allowed_origins is not None and not origin_allowed(origin, allowed_origins):
            _log_refusal(conn, "origin %r not allowed", origin)
            return CloseCode.POLICY_VIOLATION, "origin not allowed"
    return None


def _log_refusal(
    conn: Connection, why: str, *args: Any, level: int = logging.WARNING, exc_info: bool = False
) -> None:
    """Log a refused handshake, once: its client address (text and `client` field), why."""
    client = peer(conn.scope.get("client"))
    logger.log(
        level,
        "refused %s: " + why,
        client,
        *args,
        exc_info=exc_info,
        extra={"client": client, "path": conn.scope.get("path")},
    )


async def _refuse(
    send: ASGISendCallable,
    code: int,
    reason: str,
    observer: Observer | None = None,
    why: str = "error",
) -> None:
    """Refuse for good: accept, then close with `code` (1008), which the JS client obeys;
    `why` is the observer's refusal reason."""
    if observer is not None:
        observer.connection_refused(why)
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    await send({"type": "websocket.close", "code": code, "reason": reason})


_BUSY = b"503 Service Unavailable: try again later.\n"


async def _deny(
    send: ASGISendCallable,
    scope: Scope,
    retry_after: int,
    accepted: bool,
    observer: Observer | None,
    why: str,
) -> None:
    """Refuse for now, before accept: an HTTP 503 with `Retry-After` where the server offers
    the denial extension, else a close before accept (the server answers 403). `why` is the
    observer's refusal reason.

    `Retry-After` is drawn between `retry_after` and twice it, so the clients refused in
    one wave do not all come back in the same second.
    """
    if observer is not None:
        observer.connection_refused(why)
    if accepted:  # too late to refuse the handshake: the nearest thing, a close 1013
        await send({"type": "websocket.close", "code": CloseCode.TRY_AGAIN_LATER, "reason": ""})
        return
    extensions: Any = scope.get("extensions") or {}
    if "websocket.http.response" not in extensions:
        await send({"type": "websocket.close", "code": CloseCode.TRY_AGAIN_LATER, "reason": ""})
        return
    wait = retry_after + random.randint(0, retry_after)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 503,
            "headers": [
                (b"retry-after", str(wait).encode()),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_BUSY)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": _BUSY, "more_body": False})


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
                await router.idempotency.close()
                await router.backplane.stop()
                if router.observer is not None:
                    router.observer.shutdown()
            except Exception as exc:
                logger.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return


def _is_asyncapi_path(url: str, scope: Scope) -> bool:
    # Mounted under a prefix, `path` may or may not include the `root_path` (servers and
    # frameworks differ): accept both.
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "") or "")
    return path == url or (bool(root) and path == root + url)


async def _asyncapi(router: SocketRouter, scope: Scope, send: ASGISendCallable) -> None:
    """Answer GET (and HEAD) with the router's AsyncAPI document; other methods 405."""
    method = scope.get("method", "GET")
    if method not in ("GET", "HEAD"):
        await _plain(send, 405, b"405 Method Not Allowed: GET only.\n", [(b"allow", b"GET, HEAD")])
        return
    try:
        # stdlib json: a rare request, and envelope.py stays the one orjson edge of the wire
        body = json.dumps(router.asyncapi(), ensure_ascii=False).encode()
    except Exception:
        logger.exception("building the AsyncAPI document failed")
        await _plain(send, 500, b"500 Internal Server Error\n", [])
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "trailers": False,
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": b"" if method == "HEAD" else body,
            "more_body": False,
        }
    )


async def _plain(
    send: ASGISendCallable, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


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
