"""observable_socket_asgi: a pure-ASGI WebSocket router for the ObservableSocket protocol.

Clients send `{"uuid", "route", "headers", "payload"}`; the router runs the route's hooks and
handler and answers `{"uuid", "status", "headers", "payload"}`. A `SocketRouter` is a
complete ASGI application: `uvicorn module:router`.

Layers, lowest first: a module imports only modules of the lines above its own, lazy imports
included, and a folder only the folders above it (`tests/test_layers.py` checks both;
`TYPE_CHECKING` imports name types only). Names are dotted from the package; a folder's
`__init__` holds its docstring, and `client.__init__` the client's public names:

    ./                                               the pure core, at the top of the package
    _message                                         what hooks receive as `message`; value aliases
    logs status types datastructures _scan           log set-up; codes; aliases; scope views; scans
    options                                          the router's options, in frozen groups
    _extras _responses                               a missing extra's guard; plain HTTP answers
    _concurrency _schema                             threads, arity; declared types (pydantic)
    errors _backoff _route                           exceptions; reconnect delays; a frozen Route
    _exact                                           numbers as sent: integers past 64 bits
    envelope                                         pure wire format: parse and encode frames
    _protocol                                        per-connection rules: (frame, now) -> action
    observe/                                         watching a running router
    observe.__init__ observe._observe observe._top   the observer interface; the live view
    observe.metrics observe.tracing                  Prometheus, OpenTelemetry observers
    describe/                                        a router described for others
    describe.__init__ describe.asyncapi              the AsyncAPI document
    describe._typescript                             TypeScript declarations
    describe._apidoc                                 a router's routes and topics described
    describe.explorer                                the explorer page: the router described, tried
    pubsub/                                          topics and what travels with a push
    pubsub.__init__ pubsub._outage                   the folder; outage log rule
    pubsub._redis_urls pubsub._ordered pubsub._control pubsub._listening   Redis plumbing
    pubsub._history pubsub._idempotency              positions in a topic; run-once
    pubsub.subscriber pubsub.presence                what a subscriber offers; members
    pubsub.fanout pubsub.registry pubsub._wire       handed out; who holds what; Redis format
    pubsub.replay pubsub.transport                   catch-up; the transport interface
    pubsub.memory pubsub._redis_stores               in-process transport; Redis keys
    pubsub.redis_backplane                           the Redis transport
    pubsub.topics                                    the hub: a transport and its stores
    pubsub.publisher                                 publishing from outside a router
    server/                                          the serving machinery
    server._idle                                     one timer for a loop's idle clocks
    server.__init__ server.socket                    the socket user code sees
    server.runtime                                   what a router hands down, frozen
    server._pushing                                  a push written in the publisher's task
    server.pipeline                                  one request path: hooks -> reply, written
    server.connection                                the I/O shell
    server.http                                      plain-HTTP answers: 426, AsyncAPI, metrics
    server.handshake                                 refusals, the connection registry, accept
    server.app                                       scope dispatch, lifespan
    server.routing                                   SocketRouter, the ASGI app
    client/                                          the Python end of the wire
    client._state client._positions                  lifecycle; last position per topic
    client._correlation client._portal               answers to requests; a loop on a thread
    client._callbacks                                user callbacks, tasks nobody awaits
    client._connection                               the socket's owner: read, beat, reconnect
    client._client                                   the asyncio client: the request API
    client.__init__                                  the client's public names
    ./                                               the entry points
    _apps _cli_args                                  module:attribute found; command-line arguments
    testing cli __init__                             in-process test client; command line; exports
    __main__ _pytest_plugin                          `python -m ...`; the pytest marker
"""

from __future__ import annotations

from .envelope import MessageData, Request, Response
from .errors import (
    BadRequest,
    ConfigurationError,
    ConnectionClosed,
    EncodeError,
    FrameTooLarge,
    InvalidPosition,
    ObservableSocketError,
    PresenceInfoTooLarge,
    ProtocolError,
    SubscriptionLimitError,
)
from .logs import logging_config
from .pubsub._history import Subscription
from .pubsub.memory import InMemoryBackplane
from .pubsub.publisher import AsyncPublisher, Publisher
from .pubsub.transport import Backplane
from .server.routing import Route, SocketRouter
from .server.socket import Socket
from .status import CloseCode, Status, is_success
from .types import (
    AccessCheck,
    DataCheck,
    DehydrateFunction,
    FormatCheck,
    Handler,
    HandlerResult,
    Header,
    HydrateFunction,
    Payload,
    RouteOptions,
    SocketAccess,
)

#: the name of `Socket` in 0.1, kept for code written against it
Connection = Socket

__version__ = "0.1.0"

__all__ = [
    "AccessCheck",
    "AsyncPublisher",
    "BadRequest",
    "Backplane",
    "CloseCode",
    "ConfigurationError",
    "Connection",
    "ConnectionClosed",
    "DataCheck",
    "DehydrateFunction",
    "EncodeError",
    "FormatCheck",
    "FrameTooLarge",
    "Handler",
    "HandlerResult",
    "Header",
    "HydrateFunction",
    "InMemoryBackplane",
    "InvalidPosition",
    "MessageData",
    "ObservableSocketError",
    "Payload",
    "PresenceInfoTooLarge",
    "ProtocolError",
    "Publisher",
    "Request",
    "Response",
    "Route",
    "RouteOptions",
    "Socket",
    "SocketAccess",
    "SocketRouter",
    "Status",
    "Subscription",
    "SubscriptionLimitError",
    "__version__",
    "is_success",
    "logging_config",
]
