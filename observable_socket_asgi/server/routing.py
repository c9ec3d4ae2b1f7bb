"""The router: registration, publishing, and the frozen runtime it hands down.

Everything about a route is decided once, at registration (`_route.build_route`). The
router's keywords become the option groups of `options.py` and one `Runtime`, built once and
handed to the layers below (the handshake, the connection, the plain-HTTP answers), which
never read the router. `SocketRouter` is the ASGI application itself: it passes each scope
to its `server.app.Application`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from .._concurrency import ensure_async
from .._route import CallMode, Route, build_route
from .._schema import TopicType
from ..envelope import RESERVED_ROUTES
from ..errors import EncodeError
from ..observe._observe import Fanout, Observer
from ..options import (
    HistoryOptions,
    HttpPaths,
    IdempotencyOptions,
    PresenceOptions,
    Settings,
    group,
)
from ..pubsub._idempotency import Idempotency, default_identity
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
from .app import Application
from .handshake import ConnectionRegistry, Handshake, serve_connection
from .http import answers
from .runtime import Runtime

if TYPE_CHECKING:
    from ..describe.explorer import Explorer
    from ..observe.metrics import PrometheusMetrics
    from .connection import Connection

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

    Attributes:
        settings: the limits and the handshake's rules, checked and frozen (`options.Settings`).
        paths: the plain-HTTP paths answered beside the socket (`options.HttpPaths`).
        runtime: what every connection is served with, handed down frozen.
        registry: the connections served now, and the slots `max_connections` counts.
        metrics: the Prometheus metrics when `metrics_url` is set (an ASGI app too, whose
            `registry` can be scraped elsewhere), else None.
        explorer: the explorer page (an ASGI app too) when `explorer_url` is set, else None.
    """

    #: Seam for adapters: `fn(connection) -> ws`, what hooks, handlers and `access_logic`
    #: receive as `ws`; None: the core's own object. `fastapi_adapter` hands out Starlette's
    #: `WebSocket` on the same scope.
    make_ws: ClassVar[Any] = None  # Any: a callable class attribute would read as a method

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
        # every keyword above, by name: each option group takes its own (`options.group`)
        self._assemble(dict(locals()))

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
        route = build_route(
            name,
            handler,
            dict(options or {}),
            self._executor,
            self.settings.handler_timeout,
            self.settings.max_validation_errors,
        )
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
        routes = other.routes
        for name in routes:
            full = prefix + name
            if full in RESERVED_ROUTES or full in self._routes:
                raise ValueError(f"route {full!r} is reserved or already registered")
        other.publish_through(self)
        for name, route in routes.items():
            self._routes[prefix + name] = replace(route, name=prefix + name)
        known = {t.pattern for t in self._topic_types}
        self._topic_types += [t for t in other.push_topics if t.pattern not in known]

    def publish_through(self, router: SocketRouter) -> None:
        """Publish, and serve topics, through `router`'s backplane from now on.

        What `include_router` does to the router it includes, so that `publish()` in its
        handlers reaches the subscribers of the router that serves them.
        """
        self._hand_down(replace(self.runtime, topics=router.backplane))

    @property
    def routes(self) -> dict[str, Route]:
        """The registered routes by name (a copy)."""
        return dict(self._routes)

    @property
    def connections(self) -> AbstractSet[Connection]:
        """The connections this router serves now (read-only)."""
        return self.registry.connections

    @property
    def backplane(self) -> Topics:
        """The topics hub: subscriptions, fan-out, history and presence, over the transport
        given as `backplane=` (`router.backplane.transport`); started by the lifespan or on
        first use."""
        return self.runtime.topics

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
            TopicType.build(pattern, payload, description, self.settings.max_validation_errors)
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
            self._routes.values(),
            self._topic_types,
            self.settings,
            title=title,
            version=version,
            description=description,
            address=address,
        )

    def typescript(self) -> str:
        """Return TypeScript declarations of this router's payload types.

        An interface per model, `Routes` (route name -> `{request; response}`) and `Topics`
        (push topic -> payload), for `Message<Routes["math/sum"]["request"]>`.
        """
        from ..describe._apidoc import typescript_module

        return typescript_module(self._routes.values(), self._topic_types, self.settings)

    def on_startup(self, fn: F) -> F:
        """Register `fn` to run at ASGI lifespan startup; usable as a decorator."""
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: F) -> F:
        """Register `fn` to run at ASGI lifespan shutdown; usable as a decorator."""
        self._shutdown.append(fn)
        return fn

    async def startup(self) -> None:
        """Do what the ASGI lifespan's startup does: start the topics (the backplane, its
        history, presence and idempotency stores), then run the `on_startup` hooks in order.

        For a framework that owns the lifespan and never passes it to the router (Litestar,
        Quart, a Django ASGI dispatcher, FastAPI's own `lifespan=`). Pair it with `shutdown()`,
        or use `lifespan()`.

        Raises:
            Exception: whatever a hook or the backplane raised; nothing is stopped then, as
                when an ASGI server's startup fails.
        """
        await self._app.startup()

    async def shutdown(self) -> None:
        """Do what the ASGI lifespan's shutdown does: run the `on_shutdown` hooks, then close
        the idempotency store, stop the topics (the backplane) and the observer."""
        await self._app.shutdown()

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """`startup()` on entry and `shutdown()` on exit, even when the body raises: `async
        with router.lifespan(): ...` inside a framework's own lifespan."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """The ASGI 3 entry point: websocket, lifespan and (refused) http scopes."""
        await self._app(scope, receive, send)

    async def serve(
        self,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        *,
        accepted: bool = False,
    ) -> None:
        """Serve one WebSocket connection whose `websocket.connect` was already received.

        For adapters that run the handshake's first step themselves.

        Args:
            accepted: the handshake was already accepted (an endpoint called `ws.accept()`):
                a refusal to retry can then only be a close 1013.
        """
        await serve_connection(self._app.handshake, scope, receive, send, accepted)

    # Private methods

    def _assemble(self, keywords: dict[str, Any]) -> None:
        """Build the option groups, the services and the runtime from `__init__`'s keywords."""
        self.settings = group(Settings, keywords)
        self.paths = group(HttpPaths, keywords)
        history = group(HistoryOptions, keywords, "history_")
        presence = group(PresenceOptions, keywords, "presence_")
        idempotency = group(IdempotencyOptions, keywords, "idempotency_")
        # Declared push topics, in declaration order: documented, and publish() serialises
        # payloads of typed ones. Empty for most routers, so publish() pays one test.
        self._topic_types: list[TopicType] = []
        # The thread pool for plain-def hooks; bounded, so a burst of blocking handlers queues
        # instead of spawning threads without limit.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=keywords["sync_workers"], thread_name_prefix="observable-socket"
        )
        # the routes by name: changed only by add_route and include_router; the runtime
        # holds this same dict, so every connection sees routes added later
        self._routes: dict[str, Route] = {}
        # the lifespan's hooks; the application reads these same lists
        self._startup: list[Callable[[], Any]] = list(keywords["on_startup"])
        self._shutdown: list[Callable[[], Any]] = list(keywords["on_shutdown"])
        self.registry = ConnectionRegistry(
            self.settings.max_connections, self.settings.handshake_rate
        )
        self.metrics, observer = _observers(self.paths.metrics_url, keywords["tracing"])
        self.explorer = _explorer(self, self.paths.explorer_url)
        topics = _topics(keywords["backplane"], history, presence, observer)
        access_logic = keywords["access_logic"]
        # access_logic, made awaitable once
        self._access_logic = (
            None if access_logic is None else ensure_async(access_logic, self._executor)
        )
        self._hand_down(
            Runtime(
                settings=self.settings,
                routes=self._routes,
                topics=topics,
                observer=observer,
                idempotency=_idempotency(topics, idempotency),
                identity=idempotency.identity or default_identity,
                make_ws=self.make_ws,
            )
        )

    def _hand_down(self, runtime: Runtime) -> None:
        """Serve every new connection with `runtime` from now on."""
        self.runtime = runtime
        handshake = Handshake(runtime, self.registry, self._access_logic)
        http = answers(self.paths, self.metrics, self.asyncapi, self.explorer)
        self._app = Application(handshake, http, self._startup, self._shutdown)

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


def _topics(
    spec: Backplane | str | None,
    history: HistoryOptions,
    presence: PresenceOptions,
    observer: Observer | None,
) -> Topics:
    """The topics hub over the transport `spec` names, with the history and presence options."""
    topics = Topics(make_transport(spec), history=history, presence=presence)
    if observer is not None:
        topics.observe(observer)
    return topics


def _idempotency(topics: Topics, options: IdempotencyOptions) -> Idempotency:
    """Runs idempotent routes once per key, in the topics' store; the lifespan closes it."""
    return Idempotency(topics.idempotency_store(options), options.ttl)


def _observers(
    metrics_url: str | None, tracing: Any
) -> tuple[PrometheusMetrics | None, Observer | None]:
    """The metrics (when `metrics_url` is set) and what the router reports to: None when
    neither metrics nor tracing is on, which keeps every call site to one test."""
    metrics = None
    observers: list[Observer] = []
    if metrics_url is not None:
        # imported on use, like the extras they need
        from ..observe.metrics import build_metrics

        metrics = build_metrics()
        observers.append(metrics)
    if tracing is not False and tracing is not None:
        from ..observe.tracing import Tracing

        observers.append(Tracing(None if tracing is True else tracing))
    if not observers:
        return metrics, None
    return metrics, observers[0] if len(observers) == 1 else Fanout(observers)


def _explorer(router: SocketRouter, url: str | None) -> Explorer | None:
    """The explorer page of `router` at `url`, or None; imported only when asked for."""
    if url is None:
        return None
    from ..describe.explorer import Explorer

    return Explorer(router, url)
