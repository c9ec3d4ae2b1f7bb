"""observable_socket_asgi: a pure-ASGI WebSocket router for the ObservableSocket protocol.

Clients send `{"uuid", "route", "headers", "payload"}`; the router runs the route's hooks and
handler and answers `{"uuid", "status", "headers", "payload"}`. A `SocketRouter` is a
complete ASGI application: `uvicorn module:router`.

Layers, lowest first: a module imports only modules of the lines above its own, lazy imports
included, and a folder only the folders above it (`tests/test_layers.py` checks both;
`TYPE_CHECKING` imports name types only). Names are dotted from the package; a folder's
`__init__` holds its docstring, and `client.__init__` the client's public names:

    ./                                               the pure core, at the top of the package
    logs status datastructures _scan                 log set-up; codes; scope views; scans
    options                                          the router's options, in frozen groups
    _concurrency _schema                             threads, arity; declared types (pydantic)
    errors _backoff _route                           exceptions; reconnect delays; a frozen Route
    envelope                                         pure wire format: parse and encode frames
    types                                            aliases and the dict shapes users write
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
    pubsub._history pubsub._idempotency              positions in a topic; run-once
    pubsub.presence                                  members of a topic
    pubsub.topics pubsub._redis_stores               push fan-out; Redis keys
    pubsub.redis_backplane                           Redis fan-out
    server/                                          the serving machinery
    server.__init__ server.pipeline                  hooks -> reply
    server.connection                                the I/O shell
    server.asgi                                      scope dispatch, handshake checks, lifespan
    server.routing                                   SocketRouter, the ASGI app
    client/                                          the Python end of the wire
    client._state client._positions                  lifecycle; last position per topic
    client._correlation client._portal               answers to requests; a loop on a thread
    client._callbacks                                user callbacks, tasks nobody awaits
    client._connection                               the socket's owner: read, beat, reconnect
    client._client                                   the asyncio client: the request API
    client.__init__                                  the client's public names
    ./                                               the entry points
    _apps                                            module:attribute, imported as uvicorn does
    testing cli __init__                             in-process test client; command line; exports
    __main__ _pytest_plugin                          `python -m ...`; the pytest marker
"""

from __future__ import annotations

from .envelope import MessageData, Request, Response
from .errors import (
    ConfigurationError,
    ConnectionClosed,
    EncodeError,
    FrameTooLarge,
    ObservableSocketError,
    ProtocolError,
    SubscriptionLimitError,
)
from .logs import logging_config
from .pubsub._history import Subscription
from .pubsub.topics import Backplane, InMemoryBackplane
from .server.connection import Connection
from .server.routing import Route, SocketRouter
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

__version__ = "0.1.0"

__all__ = [
    "AccessCheck",
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
    "MessageData",
    "ObservableSocketError",
    "Payload",
    "ProtocolError",
    "Request",
    "Response",
    "Route",
    "RouteOptions",
    "SocketAccess",
    "SocketRouter",
    "Status",
    "Subscription",
    "SubscriptionLimitError",
    "__version__",
    "is_success",
    "logging_config",
]
