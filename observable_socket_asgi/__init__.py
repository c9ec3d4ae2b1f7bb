"""observable_socket_asgi: a pure-ASGI WebSocket router for the ObservableSocket protocol.

Clients send `{"uuid", "route", "headers", "payload"}`; the router runs the route's hooks and
handler and answers `{"uuid", "status", "headers", "payload"}`. A `SocketRouter` is a
complete ASGI application: `uvicorn module:router`.

Layers, lowest first: a module imports only modules of the lines above its own, lazy imports
included (`tests/test_layers.py` checks it; `TYPE_CHECKING` imports name types only):

    logs _portal                                      log formats and set-up; a loop on a thread
    status types datastructures _concurrency _schema  codes; aliases; scope views; threads; types
    _scan _outage                                     bounded frame scans; outage log rule
    _observe _top                                     the observer interface; the live view
    errors _backoff _route                            exceptions; reconnect delays; a frozen Route
    metrics tracing                                   Prometheus, OpenTelemetry observers
    envelope                                          pure wire format: parse and encode frames
    _protocol _client_protocol asyncapi               connection rules; correlation; AsyncAPI
    _history _idempotency _resume presence            positions; run-once; client positions; members
    pipeline topics _typescript _redis_stores         hooks -> reply; push fan-out; TS; Redis keys
    connection redis_backplane _apidoc                I/O shell; Redis fan-out; a router described
    asgi                                              scope dispatch, handshake checks, lifespan
    routing client                                    SocketRouter, the ASGI app; the Python client
    testing _cli __init__                             in-process test client; command line; exports
    __main__ _pytest_plugin                           `python -m ...`; the pytest marker
"""

from __future__ import annotations

from ._history import Subscription
from .connection import Connection
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
from .routing import Route, SocketRouter
from .status import CloseCode, Status, is_success
from .topics import Backplane, InMemoryBackplane
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
