"""Exceptions of the router.

The tree::

    ObservableSocketError
     ├── ProtocolError            a frame the router cannot serve; carries .status and .uuid
     │    ├── FrameTooLarge       413
     │    └── (400 cases)         not JSON, not an object, bad uuid/route/headers types
     ├── EncodeError              also a TypeError: a reply or push JSON cannot express
     ├── ConnectionClosed         a push or request on a connection that is closing or gone
     │    └── client.ConnectionClosed   the client's: with close code and request fate
     ├── client.ClientError       the client's other errors (ConnectFailed, RequestTimeout)
     └── ConfigurationError       also a ValueError: a route or router set up wrongly

Registration mistakes raise `TypeError`/`ValueError` (or `ConfigurationError`, which is a
`ValueError`) at import time. Wire errors never leave the connection as exceptions: the one
place that turns them into replies is `envelope.encode_error`.
"""

from __future__ import annotations

from .status import Status

__all__ = [
    "ConfigurationError",
    "ConnectionClosed",
    "EncodeError",
    "FrameTooLarge",
    "ObservableSocketError",
    "ProtocolError",
]


class ObservableSocketError(Exception):
    """Base class of every exception this package raises on purpose."""


class ProtocolError(ObservableSocketError):
    """A frame that cannot be served, with the status and uuid its error reply carries.

    Args:
        message: what was expected and what arrived; it goes on the wire, so it never holds
            exception text or data from the server.
        status: the reply's status (400 by default).
        uuid: the request's uuid when it could be read, else None.
    """

    def __init__(
        self, message: str, status: int = Status.BAD_REQUEST, uuid: str | int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.uuid = uuid


class FrameTooLarge(ProtocolError):
    """A frame longer than the router's `max_message_bytes`: answered with 413."""

    def __init__(self, size: int, limit: int, uuid: str | int | None = None) -> None:
        super().__init__(
            f"message of {size} bytes exceeds the limit of {limit} bytes",
            Status.PAYLOAD_TOO_LARGE,
            uuid,
        )


class ConfigurationError(ObservableSocketError, ValueError):
    """A router or route configured wrongly; raised at registration, never per request."""


class EncodeError(ObservableSocketError, TypeError):
    """A reply or push holds a value JSON cannot express (a set, a custom object...)."""


class ConnectionClosed(ObservableSocketError):
    """The connection is closing or closed: `ws.push()` refuses, a client request fails."""
