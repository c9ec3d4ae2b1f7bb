"""The WebSocket handshake: who is served, who is told to come back, who is turned away.

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
import logging
import random
import re
from dataclasses import dataclass
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .._concurrency import Continuation
from .._protocol import Bucket
from .._responses import header, text
from ..logs import peer
from ..status import CloseCode
from .connection import Connection

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Set as AbstractSet

    from .._route import AsyncFn
    from ..observe._observe import Observer
    from ..options import Settings
    from ..types import ASGIReceiveCallable, ASGISendCallable, Scope
    from .runtime import Runtime

__all__ = ["ConnectionRegistry", "Handshake", "origin_allowed", "serve_connection"]

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


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the handshake of every connection reads: built once by the router."""

    #: the settings, routes and services the connection is served with
    runtime: Runtime
    #: live connections and the slots `max_connections` counts
    registry: ConnectionRegistry
    #: the router's `access_logic`, awaitable, or None
    access_logic: AsyncFn | None


async def serve_connection(
    handshake: Handshake,
    scope: Any,
    receive: ASGIReceiveCallable,
    send: ASGISendCallable,
    accepted: bool = False,
    connect: bool = False,
) -> None:
    """Run the handshake checks, accept, and serve one connection until it ends.

    One coroutine from the handshake to the end of the connection: every coroutine that
    awaits another stays alive, frame and all, as long as the connection does.

    Args:
        accepted: the handshake was already accepted (an endpoint called `ws.accept()`):
            a refusal to retry can then only be a close 1013.
        connect: the client's `websocket.connect` is still to be received (the router
            serving a scope itself); False when an adapter has received it already.
    """
    if connect and (await receive())["type"] != "websocket.connect":
        return  # the client left before the handshake completed
    runtime = handshake.runtime
    conn = Connection(runtime, scope, receive, send)
    refusal = _origin_refusal(runtime.settings, scope)
    if refusal is not None:
        await _refuse(send, refusal, runtime.observer, "origin")
        return
    registry = handshake.registry
    if not registry.reserve():
        _log_refusal(scope, "max_connections (%d) reached", registry.slots_taken)
        await _deny(
            send, scope, runtime.settings.retry_after, accepted, runtime.observer, "capacity"
        )
        return
    try:
        # `conn.ws` is what access_logic, hooks and handlers receive
        why = await _admission(handshake, scope, conn.ws)
        if why == "access":
            await _refuse(send, "access denied", runtime.observer, why)
        elif why is not None:
            await _deny(send, scope, runtime.settings.retry_after, accepted, runtime.observer, why)
        else:
            await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
            registry.add(conn)
            if runtime.observer is not None:
                runtime.observer.connection_accepted()
            try:
                await conn.run()
            finally:
                registry.discard(conn)
                if runtime.observer is not None:
                    runtime.observer.connection_closed(conn.close_code)
    finally:
        registry.release()


async def _admission(handshake: Handshake, scope: Mapping[str, Any], ws: Any) -> str | None:
    """Why `conn` is not served now (the observer's refusal reason), or None: serve it.

    `"access"` is for good (`access_logic` said no); any other reason is for now.
    """
    settings = handshake.runtime.settings
    if not handshake.registry.admit(asyncio.get_running_loop().time()):
        _log_refusal(scope, "over handshake_rate %s", settings.handshake_rate)
        return "capacity"
    access_logic = handshake.access_logic
    if access_logic is None:
        return None
    timeout = settings.handshake_timeout
    try:
        allowed = await _check_access(access_logic, ws, timeout)
    except TimeoutError:
        _log_refusal(scope, "access_logic took over %s s, try again later", timeout)
        return "handshake_timeout"
    except Exception:
        # a transient fault (a database briefly down) until shown otherwise: the client is
        # told to come back, never 1011
        _log_refusal(scope, "access_logic raised, try again later", exc_info=True)
        return "error"
    if not allowed:
        _log_refusal(scope, "access_logic said no")
        return "access"
    return None


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


def _origin_refusal(settings: Settings, scope: Mapping[str, Any]) -> str | None:
    """Why the handshake's origin is refused for good (the close reason), or None."""
    allowed_origins = settings.allowed_origins
    if allowed_origins is not None or settings.require_origin:
        origin = header(scope, b"origin")
        if origin is None:
            if settings.require_origin:
                _log_refusal(scope, "no Origin header")
                return "origin required"
        elif allowed_origins is not None and not origin_allowed(origin, allowed_origins):
            _log_refusal(scope, "origin %r not allowed", origin)
            return "origin not allowed"
    return None


def _log_refusal(
    scope: Mapping[str, Any],
    why: str,
    *args: Any,
    level: int = logging.WARNING,
    exc_info: bool = False,
) -> None:
    """Log a refused handshake, once: its client address (text and `client` field), why."""
    client = peer(scope.get("client"))
    logger.log(
        level,
        "refused %s: " + why,
        client,
        *args,
        exc_info=exc_info,
        extra={"client": client, "path": scope.get("path")},
    )


async def _refuse(send: ASGISendCallable, reason: str, observer: Observer | None, why: str) -> None:
    """Refuse for good: accept, then close 1008, which the JS client obeys; `why` is the
    observer's refusal reason."""
    if observer is not None:
        observer.connection_refused(why)
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": reason})


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
    extensions: Any = scope.get("extensions") or {}
    if accepted or "websocket.http.response" not in extensions:
        # after an accept, too late to refuse the handshake: the nearest thing, a close 1013
        await send({"type": "websocket.close", "code": CloseCode.TRY_AGAIN_LATER, "reason": ""})
        return
    wait = retry_after + random.randint(0, retry_after)
    busy = text(
        503, "Service Unavailable: try again later.", [(b"retry-after", str(wait).encode())]
    )
    await busy(scope, send)
