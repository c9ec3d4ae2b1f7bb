"""observable_socket_asgi: a pure-ASGI WebSocket router for the ObservableSocket protocol.

Clients send `{"uuid", "route", "headers", "payload"}`; the router runs the route's hooks and
handler and answers `{"uuid", "status", "headers", "payload"}`. A `SocketRouter` is a
complete ASGI application: `uvicorn module:router`.

Layers, lowest first: a module imports only modules of the lines above its own, lazy imports
included (`tests/test_layers.py` checks it; `TYPE_CHECKING` imports name types only):

    status types datastructures _concurrency  wire codes; aliases; handshake views; threads
    errors _backoff _route                    exceptions; reconnect delays; a frozen Route
    envelope                                  pure wire format: parse and encode frames
    _protocol _client_protocol                pure per-connection rules; request correlation
    pipeline topics                           hooks and handler -> reply; push fan-out
    connection redis_backplane                the per-connection I/O shell; Redis fan-out
    asgi                                      scope dispatch, handshake checks, lifespan
    routing client                            SocketRouter, the ASGI app; the Python client
    testing _cli __init__                     in-process test client; command line; exports
    __main__                                  `python -m observable_socket_asgi`
"""

from __future__ import annotations

from .connection import Connection
from .envelope import MessageData, Request, Response
from .errors import (
    ConfigurationError,
    ConnectionClosed,
    EncodeError,
    FrameTooLarge,
    ObservableSocketError,
    ProtocolError,
)
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
    "__version__",
    "is_success",
]
