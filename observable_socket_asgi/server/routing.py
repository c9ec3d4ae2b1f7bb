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

from .._concurrency import ensure_async
from .._route import AsyncFn, CallMode, Route, build_route, check_positive, check_rate
from .._schema import TopicType
from ..envelope import RESERVED_ROUTES
from ..errors import EncodeError
from ..observe._observe import Fanout, Observer
from ..options import HistoryOptions, IdempotencyOptions, PresenceOptions, Settings
from ..pubsub._idempotency import (
    Idempotency,
    default_identity,
)
from ..pubsub.topics import Topics, make_transport
from ..pubsub.transport import Backplane
from ..types import (
    ASGIReceiveCallable,
    ASGISendCallable,
    Handler,
    Header,
    Payload,
    RouteOptions,
    Scope,
    SocketAccess,
)
from .asgi import ConnectionRegistry, handle

if TYPE_CHECKING:
    from ..describe.explorer import Explorer
    from ..observe.metrics import PrometheusMetrics
    from .connection import Connection
    from .runtime import Runtime

__all__ = ["CallMode", "Route", "SocketRouter"]

logger = logging.getLogger("observable_socket_asgi.routing")

F = TypeVar("F", bound=Callable[..., Any])


class SocketRouter:
    """An ObservableSocket router, and a complete ASGI 3 application.

    Serve it directly (`uvicorn module:router`), mount it in any ASGI stack, or hand it a
    connection from a framework adapter.

    Args:
        access_logic: `fn(ws) -> bool`, sync or async, run before a connection is served;
            False accepts then closes it with 1008 so the JS client does not reconnect; an
            exception refuses the handshake before accept (503) so it comes back later.
        heartbeat: answer `PING` with `PONG` (the JS client's keep-alive).
        max_in_flight: requests of one connection being served or waiting to be written;
            past it the router stops reading that socket (TCP backpressure).
        max_message_bytes: the largest frame served; larger ones are answered 413.
        max_queued_pushes: pushes waiting for a slow client before `slow_consumer` applies.
        max_buffered_bytes: bytes the router holds for one client at most: requests read
            and not yet answered, replies and pushes not yet taken by the server. Past it the
            router stops reading that socket, and a new push meets `slow_consumer`.
        slow_consumer: `"close"` (close 1013, the JS client reconnects) or `"drop_oldest"`.
        close_timeout: seconds a close the router decides on (slow consumer, idle) may wait
            for the peer to take the close frame before the socket is dropped without it.
        handler_timeout: seconds before a request is cancelled and answered 504; None: none.
        rate_limit: `(messages, per_seconds)` token bucket per connection, counting every
            frame but PING; over it, 429. More 429s than `messages` (at least 10) within
            `per_seconds` close the connection with 1008.
        handshake_timeout: seconds `access_logic` may take; past it the handshake is
            refused before accept (HTTP 503, `Retry-After`). None: no limit.
        idle_timeout: seconds without any frame (PING included) before closing with 1001;
            None: never. The default outlasts the JS client's 60 s heartbeat.
        max_connections: connections served at once by this router; past it new handshakes
            are refused before accept (HTTP 503 with `Retry-After`). None: no limit.
        handshake_rate: `(handshakes, per_seconds)`: new connections admitted per window,
            bursts up to `handshakes`; past it refused like `max_connections`, which spreads
            a reconnect wave (after a deploy) over time. None: no limit.
        retry_after: seconds a refused handshake is told to wait (`Retry-After`).
        max_topics: topics one connection may subscribe to; past it `ws.subscribe()`
            raises `SubscriptionLimitError`.
        max_topic_bytes: the longest topic name `ws.subscribe()` accepts, in UTF-8 bytes.
        allowed_origins: exact origins (`"https://app.example.com"`), host patterns
            (`"https://*.example.com"`) or `"*"`; None: every origin. Others close 1008.
        require_origin: refuse handshakes without an `Origin` header (non-browser clients).
        sync_workers: threads for plain-`def` hooks and handlers.
        on_startup: callables (sync or async) run by the ASGI lifespan's startup.
        on_shutdown: callables (sync or async) run by the ASGI lifespan's shutdown.
        backplane: what carries `publish()` to subscribers: None (this process only), a
            `redis://` URL (every worker sharing that Redis), or a `Backplane` instance.
        metrics_url: a path (`"/metrics"`) where a plain HTTP GET answers Prometheus
            metrics; needs the `metrics` extra. None: no metrics, nothing recorded.
        tracing: True for an OpenTelemetry span per request from the global tracer
            provider, or a `TracerProvider` to use; needs the `otel` extra.
        history_size: pushes kept per topic so that `ws.subscribe(topic, since=...)` can
            replay what a client missed; every push then carries `headers.offset` and
            `headers.epoch`. 0 (the default): no history, no positions.
        history_ttl: seconds a push is kept; a topic without a publish for this long starts
            a new epoch.
        history_max_bytes: characters of pushes kept per topic in memory (the in-memory
            backplane); the oldest go first.
        history_max_topics: topics with a history in memory; past it the one published to
            longest ago is forgotten.
        idempotency_ttl: seconds the answer of an idempotent route is kept for retries.
        idempotency_identity: `fn(ws) -> str | None`, whose answers a retry may receive; by
            default the user `access_logic` put in `scope["user"]`. None from it: the
            guarantee holds per connection only.
        idempotency_max_entries: answers the in-memory answer store keeps at most.
        idempotency_max_bytes: characters of answers the in-memory store keeps at most; a
            larger answer is not kept, in memory or in Redis.
        presence_ttl: seconds within which the members of a worker that died disappear.
        presence_events: publish a push (`headers.presence` = `"join"` or `"leave"`) to a
            topic's subscribers when a member joins or leaves it.
        presence_max_info_bytes: the largest encoded info a member may carry.
        asyncapi_url: answer a plain HTTP GET at this path with `asyncapi()` as JSON;
            None: every HTTP request is answered 426, as without it.
        max_validation_errors: field errors listed in the 400 of a payload that does not fit
            its declared type (the answer also counts them all).
        explorer_url: serve the explorer page at this path (plain HTTP GET): the routes and
            topics listed, tried over a socket to the same path. None: not served.
    """

    def __init__(
        self,
        access_logic: SocketAccess | None = None,
        *,
        heartbeat: bool = True,
        max_in_flight: int = 64,
        max_message_bytes: int | None = 1024 * 1024,
        max_queued_pushes: int = 1024,
        max_buffered_bytes: int = 4 * 1024 * 1024,
        slow_consumer: Literal["close", "drop_oldest"] = "close",
        close_timeout: float = 5.0,
        handler_timeout: float | None = None,
        rate_limit: tuple[int, float] | None = None,
        handshake_timeout: float | None = 10.0,
        idle_timeout: float | None = 120.0,
        max_connections: int | None = None,
        handshake_rate: tuple[int, float] | None = None,
        retry_after: int = 5,
        max_topics: int = 1024,
        max_topic_bytes: int = 1024,
        allowed_origins: Iterable[str] | None = None,
        require_origin: bool = False,
        sync_workers: int | None = None,
        on_startup: Sequence[Callable[[], Any]] = (),
        on_shutdown: Sequence[Callable[[], Any]] = (),
        backplane: Backplane | str | None = None,
        metrics_url: str | None = None,
        tracing: Any = False,
        history_size: int = 0,
        history_ttl: float = 300.0,
        history_max_bytes: int = 1024 * 1024,
        history_max_topics: int = 10_000,
        idempotency_ttl: float = 300.0,
        idempotency_identity: Callable[[Any], str | None] | None = None,
        idempotency_max_entries: int = 10_000,
        idempotency_max_bytes: int = 16 * 1024 * 1024,
        presence_ttl: float = 15.0,
        presence_events: bool = False,
        presence_max_info_bytes: int = 4096,
        asyncapi_url: str | None = None,
        max_validation_errors: int = 10,
        explorer_url: str | None = None,
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
        check_rate("handshake_rate", handshake_rate)
        _check_at_least("max_buffered_bytes", max_buffered_bytes, 1024)
        _check_at_least("retry_after", retry_after, 1)
        _check_at_least("max_topics", max_topics, 1)
        _check_at_least("max_topic_bytes", max_topic_bytes, 1)
        if metrics_url is not None and (
            not isinstance(metrics_url, str) or not metrics_url.startswith("/")
        ):
            raise ValueError(f"metrics_url must be a path starting with '/', got {metrics_url!r}")
        if asyncapi_url is not None and not asyncapi_url.startswith("/"):
            raise ValueError(f"asyncapi_url must be a path starting with '/', got {asyncapi_url!r}")
        if explorer_url is not None:
            from ..describe.explorer import check_url

            check_url("explorer_url", explorer_url)
        if max_validation_errors < 1:
            raise ValueError(
                f"max_validation_errors must be at least 1, got {max_validation_errors}"
            )

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
            max_buffered_bytes=max_buffered_bytes,
            handshake_rate=handshake_rate,
            retry_after=retry_after,
            max_topics=max_topics,
            max_topic_bytes=max_topic_bytes,
            allowed_origins=None if allowed_origins is None else tuple(allowed_origins),
            require_origin=require_origin,
        )
        self._asyncapi_url = asyncapi_url
        self._max_validation_errors = max_validation_errors
        # Declared push topics, in declaration order: documented, and publish() serialises
        # payloads of typed ones. Empty for most routers, so publish() pays one test.
        self._topic_types: list[TopicType] = []

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
        self.registry = ConnectionRegistry(
            self.settings.max_connections, self.settings.handshake_rate
        )
        self._startup = list(on_startup)
        self._shutdown = list(on_shutdown)
        #: topic subscriptions and their fan-out; started by the lifespan or on first use
        self.backplane = Topics(
            make_transport(backplane),
            history=HistoryOptions(
                history_size, history_ttl, history_max_bytes, history_max_topics
            ),
            presence=PresenceOptions(presence_ttl, presence_events, presence_max_info_bytes),
        )
        if idempotency_identity is not None and not callable(idempotency_identity):
            raise TypeError(f"idempotency_identity must be callable, got {idempotency_identity!r}")
        # whose answers an idempotent retry may receive
        self._identity = idempotency_identity or default_identity
        #: runs idempotent routes once per key; the lifespan shutdown closes it
        self.idempotency = Idempotency(
            self.backplane.idempotency_store(
                IdempotencyOptions(idempotency_ttl, idempotency_max_entries, idempotency_max_bytes)
            ),
            idempotency_ttl,
        )

        #: the path answering Prometheus metrics, or None
        self.metrics_url = metrics_url
        #: the Prometheus metrics when `metrics_url` is set (an ASGI app too, and its
        #: `registry` can be scraped elsewhere), else None
        self.metrics: PrometheusMetrics | None = None
        #: the explorer page (an ASGI app too) when `explorer_url` is set, else None
        self.explorer: Explorer | None = None
        if explorer_url is not None:
            from ..describe.explorer import Explorer

            self.explorer = Explorer(self, explorer_url)
        # whoever watches the router; None (the default) keeps every call site to one test
        self._observer: Observer | None = None
        observers: list[Observer] = []
        if metrics_url is not None:
            from ..observe.metrics import build_metrics

            self.metrics = build_metrics()
            observers.append(self.metrics)
        if tracing is not False and tracing is not None:
            from ..observe.tracing import Tracing

            observers.append(Tracing(None if tracing is True else tracing))
        if observers:
            self._observer = observers[0] if len(observers) == 1 else Fanout(observers)
            self.backplane.observe(self._observer)

    # Public API

    def route(self, name: str, options: RouteOptions | None = None) -> Callable[[F], F]:
        """Register the decorated function as the handler of route `name`.

        Raises:
            ValueError: `name` is reserved (`PING`, `PONG`) or already registered, or an
                option key is unknown.
            TypeError: used bare (`@router.route` without the name), or a hook or the
                handler cannot take the arguments it will be given.
        """
        if callable(name):
            # `@router.route` with no parentheses hands us the handler as the name; the
            # decorator it would return replaces the handler and registers nothing
            raise TypeError(
                f'@router.route needs the route name: write @router.route("name") above '
                f"{getattr(name, '__qualname__', None) or name!r}, not a bare @router.route"
            )

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
        known = {t.pattern for t in self._topic_types}
        self._topic_types += [t for t in other._topic_types if t.pattern not in known]

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

        A topic declared with `push_topic(..., payload=T)` has its payload checked and
        serialised as `T` first (a model becomes its JSON form).

        Raises:
            EncodeError: the payload or headers cannot be encoded as JSON, or the payload
                does not fit the type declared for the topic.
        """
        if self._topic_types:
            payload = self._serialise_push(topic, payload)
        await self.backplane.publish(topic, payload, headers)

    async def close_subscribers(self, topic: str, code: int = 1000, reason: str = "") -> int:
        """Close every connection subscribed to `topic`, on every worker, with `code` and
        `reason`: on a user's own topic, "sign this user out everywhere".

        Returns:
            How many connections of this worker are being closed.

        Raises:
            ValueError: a code a server may not send, or a reason over 123 bytes in UTF-8.
        """
        return await self.backplane.close_subscribers(topic, code, reason)

    async def presence(self, topic: str) -> dict[str, Any]:
        """The members of `topic` on every worker: `{member_id: info}`.

        A member is a connection subscribed with `ws.subscribe(topic, presence=info)`.
        """
        return await self.backplane.members(topic)

    def push_topic(
        self, pattern: str, *, payload: Any = None, description: str | None = None
    ) -> None:
        """Declare a push topic: documented in `asyncapi()` and `typescript()`.

        Args:
            pattern: a topic name (`"news"`), or a pattern whose `{placeholders}` stand for
                any text (`"room:{room}"`).
            payload: the payload's type (anything pydantic's `TypeAdapter` accepts);
                `publish()` to a matching topic checks and serialises it.
            description: what a subscriber receives, for the document's readers.

        Raises:
            ValueError: the pattern is empty or already declared.
            ImportError: a type is given and pydantic v2 is not installed.
        """
        if any(t.pattern == pattern for t in self._topic_types):
            raise ValueError(f"push topic {pattern!r} is already declared")
        self._topic_types.append(
            TopicType.build(pattern, payload, description, self.max_validation_errors)
        )

    @property
    def push_topics(self) -> list[TopicType]:
        """The declared push topics, in declaration order (a copy)."""
        return list(self._topic_types)

    def asyncapi(
        self,
        title: str = "ObservableSocket API",
        version: str = "0.1.0",
        *,
        description: str | None = None,
        address: str | None = None,
    ) -> dict[str, Any]:
        """Return this router's AsyncAPI 3.0 document, as a JSON-ready dict.

        Args:
            address: the socket's path (`"/ws"`), when it is fixed.
        """
        from ..describe._apidoc import asyncapi_document

        return asyncapi_document(
            self, title=title, version=version, description=description, address=address
        )

    def typescript(self) -> str:
        """Return TypeScript declarations of this router's payload types.

        An interface per model, `Routes` (route name -> `{request; response}`) and `Topics`
        (push topic -> payload), for `Message<Routes["math/sum"]["request"]>`.
        """
        from ..describe._apidoc import typescript_module

        return typescript_module(self)

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
    def runtime(self) -> Runtime:
        """What this router hands down to a connection: its limits, live routes, topics,
        observer and idempotency, never the router itself."""
        from .runtime import Runtime

        overridden = type(self).socket_for is not SocketRouter.socket_for
        return Runtime(
            settings=self.settings,
            routes=self._routes,
            topics=self.backplane,
            observer=self._observer,
            idempotency=self.idempotency,
            identity=self._identity,
            make_ws=self.socket_for if overridden else None,
        )

    @property
    def route_table(self) -> Mapping[str, Route]:
        """The live routes by name, not a copy: what each connection's protocol looks up."""
        return self._routes

    @property
    def observer(self) -> Observer | None:
        """What the connections, the handshake and the backplane report to; None when
        neither metrics nor tracing is on."""
        return self._observer

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
    def max_buffered_bytes(self) -> int:
        """Bytes held for one client before reading stops and pushes meet `slow_consumer`."""
        return self.settings.max_buffered_bytes

    @property
    def handshake_rate(self) -> tuple[int, float] | None:
        """`(handshakes, per_seconds)` admitted; None: no limit."""
        return self.settings.handshake_rate

    @property
    def retry_after(self) -> int:
        """Seconds a refused handshake is told to wait."""
        return self.settings.retry_after

    @property
    def max_topics(self) -> int:
        """Topics one connection may subscribe to."""
        return self.settings.max_topics

    @property
    def max_topic_bytes(self) -> int:
        """The longest topic name accepted, in UTF-8 bytes."""
        return self.settings.max_topic_bytes

    @property
    def allowed_origins(self) -> tuple[str, ...] | None:
        """Origins admitted; None: every origin."""
        return self.settings.allowed_origins

    @property
    def require_origin(self) -> bool:
        """Whether handshakes without an `Origin` header are refused."""
        return self.settings.require_origin

    @property
    def asyncapi_url(self) -> str | None:
        """The path a plain HTTP GET gets the AsyncAPI document at; None: not served."""
        return self._asyncapi_url

    @property
    def max_validation_errors(self) -> int:
        """Field errors listed in the 400 of a payload that does not fit its type."""
        return self._max_validation_errors

    # Seams for adapters

    def socket_for(self, connection: Any) -> Any:
        """Return the object hooks and handlers receive as `ws` for `connection`.

        The core passes its `Connection`; a framework adapter overrides this to hand out its
        own object (Starlette's `WebSocket`) built on the same scope.
        """
        return connection

    # Private methods

    def _serialise_push(self, topic: str, payload: Any) -> Any:
        from .._schema import Invalid

        for declared in self._topic_types:
            if declared.regex.fullmatch(topic):
                if declared.schema is None:
                    return payload
                try:
                    return declared.schema.serialise(payload)
                except Invalid as exc:
                    raise EncodeError(
                        f"payload for topic {topic!r} does not fit the type declared for "
                        f"{declared.pattern!r}: {exc}"
                    ) from None
        return payload

    def _build_route(self, name: str, handler: Any, options: dict[str, Any]) -> Route:
        return build_route(
            name,
            handler,
            options,
            self._executor,
            self.settings.handler_timeout,
            self._max_validation_errors,
        )


def _check_at_least(name: str, value: int, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
