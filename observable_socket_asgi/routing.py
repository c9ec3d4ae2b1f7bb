"""Routes and the router: everything about a route is decided once, at registration.

A `Route` is frozen: its hooks are already wrapped to be awaitable (plain functions run on
the router's thread pool), and how many arguments each hook takes is read here with
`inspect`, never per request. `SocketRouter` is the ASGI application itself; the connection
work lives in `asgi.py` and `connection.py`.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._concurrency import ensure_async
from ._protocol import Settings
from ._route import AsyncFn, CallMode, Route, build_route, check_positive, check_rate
from .asgi import ConnectionRegistry, handle
from .envelope import RESERVED_ROUTES
from .topics import Backplane, InMemoryBackplane
from .types import (
    ASGIReceiveCallable,
    ASGISendCallable,
    Handler,
    Header,
    Payload,
    RouteOptions,
    Scope,
    SocketAccess,
)

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["CallMode", "Route", "SocketRouter", "make_backplane"]

logger = logging.getLogger("observable_socket_asgi.routing")

F = TypeVar("F", bound=Callable[..., Any])


class SocketRouter:
    """An ObservableSocket router, and a complete ASGI 3 application.

    Serve it directly (`uvicorn module:router`), mount it in any ASGI stack, or hand it a
    connection from a framework adapter.

    Args:
        access_logic: `fn(ws) -> bool`, sync or async, run before a connection is served;
            False accepts then closes it with 1008 so the JS client does not reconnect.
        heartbeat: answer `PING` with `PONG` (the JS client's keep-alive).
        max_in_flight: requests of one connection being served or waiting to be written;
            past it the router stops reading that socket (TCP backpressure).
        max_message_bytes: the largest frame served; larger ones are answered 413.
        max_queued_pushes: pushes waiting for a slow client before `slow_consumer` applies.
        slow_consumer: `"close"` (close 1013, the JS client reconnects) or `"drop_oldest"`.
        close_timeout: seconds a close the router decides on (slow consumer, idle) may wait
            for the peer to take the close frame before the socket is dropped without it.
        handler_timeout: seconds before a request is cancelled and answered 504; None: none.
        rate_limit: `(messages, per_seconds)` token bucket per connection; over it, 429.
        handshake_timeout: seconds `access_logic` may take; past it the connection is
            closed with 1013 (try again later). None: no limit.
        idle_timeout: seconds without any frame (PING included) before closing with 1001;
            None: never. The default outlasts the JS client's 60 s heartbeat.
        max_connections: connections served at once by this router; past it, new ones are
            closed with 1013. None: no limit.
        allowed_origins: exact origins (`"https://app.example.com"`), host patterns
            (`"https://*.example.com"`) or `"*"`; None: every origin. Others close 1008.
        require_origin: refuse handshakes without an `Origin` header (non-browser clients).
        sync_workers: threads for plain-`def` hooks and handlers.
        on_startup, on_shutdown: callables (sync or async) run by the ASGI lifespan.
        backplane: what carries `publish()` to subscribers: None (this process only), a
            `redis://` URL (every worker sharing that Redis), or a `Backplane` instance.
    """

    def __init__(
        self,
        access_logic: SocketAccess | None = None,
        *,
        heartbeat: bool = True,
        max_in_flight: int = 64,
        max_message_bytes: int | None = 1024 * 1024,
        max_queued_pushes: int = 1024,
        slow_consumer: Literal["close", "drop_oldest"] = "close",
        close_timeout: float = 5.0,
        handler_timeout: float | None = None,
        rate_limit: tuple[int, float] | None = None,
        handshake_timeout: float | None = 10.0,
        idle_timeout: float | None = 120.0,
        max_connections: int | None = None,
        allowed_origins: Iterable[str] | None = None,
        require_origin: bool = False,
        sync_workers: int | None = None,
        on_startup: Sequence[Callable[[], Any]] = (),
        on_shutdown: Sequence[Callable[[], Any]] = (),
        backplane: Backplane | str | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if max_message_bytes is not None and max_message_bytes < 64:
            raise ValueError(f"max_message_bytes must be at least 64, got {max_message_bytes}")
        if max_queued_pushes < 1:
            raise ValueError(f"max_queued_pushes must be at least 1, got {max_queued_pushes}")
        if slow_consumer not in ("close", "drop_oldest"):
            raise ValueError(
                f"slow_consumer must be 'close' or 'drop_oldest', got {slow_consumer!r}"
            )
        check_positive("handler_timeout", handler_timeout)
        check_positive("handshake_timeout", handshake_timeout)
        check_positive("close_timeout", close_timeout)
        check_positive("idle_timeout", idle_timeout)
        check_rate("rate_limit", rate_limit)
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")

        #: the options above, checked and frozen: what connections and the handshake read
        self.settings = Settings(
            heartbeat=heartbeat,
            max_in_flight=max_in_flight,
            max_message_bytes=max_message_bytes,
            max_queued_pushes=max_queued_pushes,
            slow_consumer=slow_consumer,
            close_timeout=close_timeout,
            handler_timeout=handler_timeout,
            rate_limit=rate_limit,
            handshake_timeout=handshake_timeout,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            allowed_origins=None if allowed_origins is None else tuple(allowed_origins),
            require_origin=require_origin,
        )

        # The thread pool for plain-def hooks; bounded, so a burst of blocking handlers queues
        # instead of spawning threads without limit.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=sync_workers, thread_name_prefix="observable-socket"
        )
        # access_logic, made awaitable once; read by the handshake through `access_logic`
        self._access_logic: AsyncFn | None = (
            None if access_logic is None else ensure_async(access_logic, self._executor)
        )
        # the routes by name: changed only by add_route and include_router, read by every
        # connection's protocol through `route_table`
        self._routes: dict[str, Route] = {}
        #: live connections and the slots max_connections counts; asgi.py changes it
        self.registry = ConnectionRegistry(self.settings.max_connections)
        self._startup = list(on_startup)
        self._shutdown = list(on_shutdown)
        #: topic subscriptions and their fan-out; started by the lifespan or on first use
        self.backplane: Backplane = make_backplane(backplane)

    # Public API

    def route(self, name: str, options: RouteOptions | None = None) -> Callable[[F], F]:
        """Register the decorated function as the handler of route `name`.

        Raises:
            ValueError: `name` is reserved (`PING`, `PONG`) or already registered, or an
                option key is unknown.
            TypeError: a hook or the handler cannot take the arguments it will be given.
        """

        def decorator(fn: F) -> F:
            self.add_route(name, fn, options)
            return fn

        return decorator

    def add_route(self, name: str, handler: Handler, options: RouteOptions | None = None) -> Route:
        """Register `handler` for route `name`; the non-decorator form of `route()`."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"route name must be a non-empty string, got {name!r}")
        if name in RESERVED_ROUTES:
            raise ValueError(f"route name {name!r} is reserved for the heartbeat")
        if name in self._routes:
            raise ValueError(f"route {name!r} is already registered")
        route = self._build_route(name, handler, dict(options or {}))
        self._routes[name] = route
        return route

    def include_router(self, other: SocketRouter, prefix: str = "") -> None:
        """Serve every route of `other` here too, under `prefix + name`.

        `other` is served through this router: from now on it publishes through this
        router's backplane, so `other.publish()` in its handlers reaches this router's
        subscribers.

        Raises:
            ValueError: a name is reserved or already registered here.
        """
        for name in other._routes:
            full = prefix + name
            if full in RESERVED_ROUTES or full in self._routes:
                raise ValueError(f"route {full!r} is reserved or already registered")
        other.backplane = self.backplane
        for name, route in other._routes.items():
            self._routes[prefix + name] = replace(route, name=prefix + name)

    @property
    def routes(self) -> dict[str, Route]:
        """The registered routes by name (a copy)."""
        return dict(self._routes)

    @property
    def connections(self) -> AbstractSet[Connection]:
        """The connections this router serves now (read-only)."""
        return self.registry.connections

    async def publish(
        self, topic: str, payload: Payload = None, headers: Header | None = None
    ) -> None:
        """Push `payload` to every connection subscribed to `topic`, on every worker.

        The frame is encoded once; its `route` is the topic and its uuid a fresh server
        uuid. Delivery is at most once, in publish order per publisher.

        Raises:
            EncodeError: the payload or headers cannot be encoded as JSON.
        """
        await self.backplane.publish(topic, payload, headers)

    def on_startup(self, fn: F) -> F:
        """Register `fn` to run at ASGI lifespan startup; usable as a decorator."""
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: F) -> F:
        """Register `fn` to run at ASGI lifespan shutdown; usable as a decorator."""
        self._shutdown.append(fn)
        return fn

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """The ASGI 3 entry point: websocket, lifespan and (refused) http scopes."""
        await handle(self, scope, receive, send)

    # For the layers below: read-only views of the router's state

    @property
    def route_table(self) -> Mapping[str, Route]:
        """The live routes by name, not a copy: what each connection's protocol looks up."""
        return self._routes

    @property
    def access_logic(self) -> AsyncFn | None:
        """The router's `access_logic`, awaitable, or None."""
        return self._access_logic

    @property
    def startup_hooks(self) -> tuple[Callable[[], Any], ...]:
        """What the ASGI lifespan runs at startup, in order."""
        return tuple(self._startup)

    @property
    def shutdown_hooks(self) -> tuple[Callable[[], Any], ...]:
        """What the ASGI lifespan runs at shutdown, in order."""
        return tuple(self._shutdown)

    # Options, read-only (see the class docstring)

    @property
    def heartbeat(self) -> bool:
        """Whether `PING` is answered with `PONG`."""
        return self.settings.heartbeat

    @property
    def max_in_flight(self) -> int:
        """Requests of one connection in flight before reading stops."""
        return self.settings.max_in_flight

    @property
    def max_message_bytes(self) -> int | None:
        """The largest frame served, in bytes."""
        return self.settings.max_message_bytes

    @property
    def max_queued_pushes(self) -> int:
        """Pushes waiting for a slow client before `slow_consumer` applies."""
        return self.settings.max_queued_pushes

    @property
    def slow_consumer(self) -> Literal["close", "drop_oldest"]:
        """The slow-consumer policy."""
        return self.settings.slow_consumer

    @property
    def close_timeout(self) -> float:
        """Seconds a close decided by the router may wait for the peer."""
        return self.settings.close_timeout

    @property
    def handler_timeout(self) -> float | None:
        """Seconds before a request is answered 504."""
        return self.settings.handler_timeout

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """`(messages, per_seconds)` per connection."""
        return self.settings.rate_limit

    @property
    def handshake_timeout(self) -> float | None:
        """Seconds `access_logic` may take."""
        return self.settings.handshake_timeout

    @property
    def idle_timeout(self) -> float | None:
        """Seconds without a frame before closing with 1001."""
        return self.settings.idle_timeout

    @property
    def max_connections(self) -> int | None:
        """Connections served at once by this router."""
        return self.settings.max_connections

    @property
    def allowed_origins(self) -> tuple[str, ...] | None:
        """Origins admitted; None: every origin."""
        return self.settings.allowed_origins

    @property
    def require_origin(self) -> bool:
        """Whether handshakes without an `Origin` header are refused."""
        return self.settings.require_origin

    # Seams for adapters

    def socket_for(self, connection: Any) -> Any:
        """Return the object hooks and handlers receive as `ws` for `connection`.

        The core passes its `Connection`; a framework adapter overrides this to hand out its
        own object (Starlette's `WebSocket`) built on the same scope.
        """
        return connection

    # Private methods

    def _build_route(self, name: str, handler: Any, options: dict[str, Any]) -> Route:
        return build_route(name, handler, options, self._executor, self.settings.handler_timeout)


def make_backplane(spec: Backplane | str | None) -> Backplane:
    """Build the backplane a router was given: None (in memory), a URL, or an instance.

    Raises:
        ValueError: a URL of an unknown scheme.
    """
    if spec is None:
        return InMemoryBackplane()
    if isinstance(spec, Backplane):
        return spec
    if isinstance(spec, str):
        if spec == "memory" or spec == "memory://":
            return InMemoryBackplane()
        if spec.startswith(("redis://", "rediss://", "unix://")):
            # imported on use: the Redis client is needed only by routers given a Redis URL
            from .redis_backplane import RedisBackplane

            return RedisBackplane(spec)
        raise ValueError(f"backplane must be 'memory', a redis:// URL or a Backplane, got {spec!r}")
    raise TypeError(f"backplane must be a Backplane, a URL or None, got {type(spec).__name__}")
