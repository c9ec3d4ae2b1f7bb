"""observable_socket_asgi: a pure-ASGI WebSocket router for the ObservableSocket protocol.

Clients send `{"uuid", "route", "headers", "payload"}`; the router runs the route's hooks and
handler and answers `{"uuid", "status", "headers", "payload"}`. A `SocketRouter` is a
complete ASGI application: `uvicorn module:router`.
"""

from __future__ import annotations

from ._history import Subscription
from .connection import Connection
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
    MessageData,
    Payload,
    Request,
    Response,
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
    "__version__",
    "is_success",
]
