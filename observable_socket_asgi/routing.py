"""Routes and the router: everything about a route is decided once, at registration.

A `Route` is frozen: its hooks are already wrapped to be awaitable (plain functions run on
the router's thread pool), and how many arguments each hook takes is read here with
`inspect`, never per request. `SocketRouter` is the ASGI application itself; the connection
work lives in `asgi.py` and `connection.py`.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._concurrency import arity_accepts, ensure_async
from .envelope import RESERVED_ROUTES
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
    from ._observe import Observer
    from .metrics import PrometheusMetrics
    from .topics import Backplane

__all__ = ["CallMode", "Route", "SocketRouter"]

logger = logging.getLogger("observable_socket_asgi.routing")

F = TypeVar("F", bound=Callable[..., Any])
AsyncFn = Callable[..., Awaitable[Any]]

_OPTION_KEYS = frozenset({"data_check", "access", "hydrate", "dehydrate", "timeout", "rate_limit"})


class CallMode:
    """How a route's handler is called; chosen from its signature at registration."""

    #: handler(value): hydrate's result, else `local` (even when empty).
    SINGLE = 1
    #: handler(ws, headers, payload), always.
    TRIPLE = 3
    #: the README's priority rule: hydrate > non-empty local > (ws, headers, payload).
    EITHER = 4


@dataclass(frozen=True, slots=True)
class Route:
    """A registered route: the handler and its hooks, ready to await."""

    name: str
    handler: AsyncFn
    call_mode: int
    data_check: AsyncFn | None = None
    data_check_local: bool = False
    access: AsyncFn | None = None
    access_local: bool = False
    hydrate: AsyncFn | None = None
    dehydrate: AsyncFn | None = None
    #: seconds before the handler is cancelled and answered 504; None: no limit
    timeout: float | None = None
    #: (messages, per_seconds) for a bucket of this route's own; None: the router's bucket
    rate_limit: tuple[int, float] | None = None
    #: no data_check, access or hydrate, and a handler taking (ws, headers, payload): the
    #: pipeline calls it straight away (the common case, kept short)
    direct: bool = False


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
        metrics_url: a path (`"/metrics"`) where a plain HTTP GET answers Prometheus
            metrics; needs the `metrics` extra. None: no metrics, nothing recorded.
        tracing: True for an OpenTelemetry span per request from the global tracer
            provider, or a `TracerProvider` to use; needs the `otel` extra.
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
        metrics_url: str | None = None,
        tracing: Any = False,
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
        _check_positive("handler_timeout", handler_timeout)
        _check_positive("handshake_timeout", handshake_timeout)
        _check_positive("close_timeout", close_timeout)
        _check_positive("idle_timeout", idle_timeout)
        _check_rate("rate_limit", rate_limit)
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if metrics_url is not None and (
            not isinstance(metrics_url, str) or not metrics_url.startswith("/")
        ):
            raise ValueError(f"metrics_url must be a path starting with '/', got {metrics_url!r}")

        self.heartbeat = heartbeat
        self.max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self.max_queued_pushes = max_queued_pushes
        self.slow_consumer = slow_consumer
        self.close_timeout = close_timeout
        self.handler_timeout = handler_timeout
        self.rate_limit = rate_limit
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.allowed_origins = None if allowed_origins is None else tuple(allowed_origins)
        self.require_origin = require_origin

        # The thread pool for plain-def hooks; bounded, so a burst of blocking handlers queues
        # instead of spawning threads without limit.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=sync_workers, thread_name_prefix="observable-socket"
        )
        self._access_logic: AsyncFn | None = (
            None if access_logic is None else ensure_async(access_logic, self._executor)
        )
        self._routes: dict[str, Route] = {}
        # Live connections of this router: the registry that max_connections counts and that
        # tests check for leaks. Owned by asgi.py, which adds and removes entries.
        self.connections: set[Any] = set()
        # Connections past the max_connections check and not yet ended, handshakes included:
        # what the limit counts. Owned by asgi.py.
        self._slots_taken = 0
        self._startup = list(on_startup)
        self._shutdown = list(on_shutdown)
        #: topic subscriptions and their fan-out; started by the lifespan or on first use
        from .topics import make_backplane  # topics needs connection, which needs us

        self.backplane: Backplane = make_backplane(backplane)

        self.metrics_url = metrics_url
        #: the Prometheus metrics when `metrics_url` is set (its `registry` can be scraped
        #: elsewhere too), else None
        self.metrics: PrometheusMetrics | None = None
        # Whoever watches the router; None (the default) keeps every call site to one test.
        self._observer: Observer | None = None
        observers: list[Observer] = []
        if metrics_url is not None:
            from .metrics import build_metrics

            self.metrics = build_metrics()
            observers.append(self.metrics)
        if tracing is not False and tracing is not None:
            from .tracing import Tracing

            observers.append(Tracing(None if tracing is True else tracing))
        if observers:
            from ._observe import Fanout

            self._observer = observers[0] if len(observers) == 1 else Fanout(observers)
            self.backplane.observe(self._observer)

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
        from .asgi import handle

        await handle(self, scope, receive, send)

    # Seams for adapters

    def socket_for(self, connection: Any) -> Any:
        """Return the object hooks and handlers receive as `ws` for `connection`.

        The core passes its `Connection`; a framework adapter overrides this to hand out its
        own object (Starlette's `WebSocket`) built on the same scope.
        """
        return connection

    # Private methods

    def _build_route(self, name: str, handler: Any, options: dict[str, Any]) -> Route:
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ValueError(
                f"route {name!r}: unknown option(s) {sorted(unknown)}; "
                f"expected some of {sorted(_OPTION_KEYS)}"
            )
        if not callable(handler):
            raise TypeError(f"route {name!r}: handler must be callable, got {handler!r}")
        data_check = options.get("data_check")
        access = options.get("access")
        hydrate = options.get("hydrate")
        dehydrate = options.get("dehydrate")
        timeout = options.get("timeout", self.handler_timeout)
        rate_limit = options.get("rate_limit")
        _check_positive(f"route {name!r}: timeout", timeout)
        _check_rate(f"route {name!r}: rate_limit", rate_limit)

        data_check_local = access_local = False
        if data_check is not None:
            data_check_local = _pick_arity(
                name, "data_check", data_check, 2, 1, "(message[, local])"
            )
        if access is not None:
            access_local = _pick_arity(name, "access", access, 3, 2, "(ws, message[, local])")
        if hydrate is not None:
            _require_arity(name, "hydrate", hydrate, 2, "(ws, message)")
        if dehydrate is not None:
            _require_arity(name, "dehydrate", dehydrate, 1, "(payload)")

        takes_one = arity_accepts(handler, 1)
        takes_three = arity_accepts(handler, 3)
        if takes_one and takes_three:
            call_mode = CallMode.EITHER
        elif takes_one:
            call_mode = CallMode.SINGLE
        elif takes_three:
            if hydrate is not None:
                raise TypeError(
                    f"route {name!r}: with a hydrate hook the handler is called with one "
                    f"argument, but {_qualname(handler)} takes (ws, headers, payload)"
                )
            call_mode = CallMode.TRIPLE
        else:
            raise TypeError(
                f"route {name!r}: handler {_qualname(handler)} must take one argument "
                "(hydrated value or local) or three (ws, headers, payload)"
            )

        executor = self._executor
        return Route(
            name=name,
            handler=ensure_async(handler, executor),
            call_mode=call_mode,
            data_check=None if data_check is None else ensure_async(data_check, executor),
            data_check_local=data_check_local,
            access=None if access is None else ensure_async(access, executor),
            access_local=access_local,
            hydrate=None if hydrate is None else ensure_async(hydrate, executor),
            dehydrate=None if dehydrate is None else ensure_async(dehydrate, executor),
            timeout=timeout,
            rate_limit=rate_limit,
            direct=data_check is None
            and access is None
            and hydrate is None
            and call_mode != CallMode.SINGLE,
        )


def _pick_arity(route: str, hook: str, fn: Any, full: int, short: int, shape: str) -> bool:
    """True if `fn` takes the `local` argument too, False if it takes the short form."""
    if not callable(fn):
        raise TypeError(f"route {route!r}: {hook} must be callable, got {fn!r}")
    if arity_accepts(fn, full):
        return True
    if arity_accepts(fn, short):
        return False
    raise TypeError(f"route {route!r}: {hook} {_qualname(fn)} must take {shape}")


def _require_arity(route: str, hook: str, fn: Any, count: int, shape: str) -> None:
    if not callable(fn):
        raise TypeError(f"route {route!r}: {hook} must be callable, got {fn!r}")
    if not arity_accepts(fn, count):
        raise TypeError(f"route {route!r}: {hook} {_qualname(fn)} must take {shape}")


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")


def _check_rate(name: str, value: tuple[int, float] | None) -> None:
    if value is None:
        return
    try:
        messages, seconds = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (messages, per_seconds), got {value!r}") from None
    if not (isinstance(messages, int) and messages >= 1 and seconds > 0):
        raise ValueError(f"{name} must be (messages >= 1, per_seconds > 0), got {value!r}")


def _qualname(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
