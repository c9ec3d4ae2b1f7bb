"""Exceptions of the router.

The tree::

    ObservableSocketError
     ├── ProtocolError            a frame the router cannot serve; carries .status and .uuid
     │    ├── FrameTooLarge       413
     │    └── (400 cases)         not JSON, not an object, bad uuid/route/headers types
     ├── EncodeError              also a TypeError: a reply or push JSON cannot express
     ├── ConfigurationError       also a ValueError: a route or router set up wrongly
     ├── BadRequest               what the client sent cannot be served; carries .status (400):
     │    │                       a handler that lets one escape answers with it, not a 500
     │    ├── SubscriptionLimitError  also a ValueError: `ws.subscribe()` past max_topics or
     │    │                           max_topic_bytes
     │    ├── InvalidPosition     also a ValueError: a malformed resume position (`since`)
     │    └── PresenceInfoTooLarge  also a ValueError: presence info over
     │                                presence_max_info_bytes
     ├── ConnectionClosed         a push or request on a connection that is closing or gone;
     │                            .code, .reason, .may_have_reached_server, .route
     └── ClientError              the client's and the test client's other errors
          ├── ConnectFailed       also a ConnectionError: the handshake failed
          ├── RequestTimeout      also a TimeoutError: no answer within the timeout
          └── HandshakeRejected   the test client: the app refused the WebSocket

`ConnectionClosed` is one class for both sides: the server's `ws.push()` raises it with a
reason only, the clients add the close code and whether the request may have run.

Registration mistakes raise `TypeError`/`ValueError` (or `ConfigurationError`, which is a
`ValueError`) at import time. A `BadRequest` is the client's mistake, not the server's: when a
handler lets one escape, the client gets its status and message with its uuid, and the log
gets one warning line without a traceback (repeats are summarised), where any other exception
is a 500 logged with its traceback. Wire errors never leave the connection as exceptions: the one
place that turns them into replies is `envelope.encode_error`.
"""

from __future__ import annotations

from .status import Status

__all__ = [
    "ClientError",
    "ConfigurationError",
    "ConnectFailed",
    "ConnectionClosed",
    "EncodeError",
    "FrameTooLarge",
    "HandshakeRejected",
    "ObservableSocketError",
    "BadRequest",
    "InvalidPosition",
    "PresenceInfoTooLarge",
    "ProtocolError",
    "RequestTimeout",
    "SubscriptionLimitError",
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


class BadRequest(ObservableSocketError):
    """What the client sent cannot be served: the library raises it (or a handler may), and
    a handler that lets it escape answers with `status` and the message, not a 500.

    The message goes on the wire: it says what was expected and holds nothing of the server.

    Args:
        message: what was refused and why.
        status: the answer's status (400 by default).
    """

    #: the status the request is answered with (400 BAD_REQUEST unless given)
    status: int = Status.BAD_REQUEST

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class SubscriptionLimitError(BadRequest, ValueError):
    """`ws.subscribe()` refused: a topic name over `max_topic_bytes`, or a connection already
    holding `max_topics` topics.

    The message says which limit and its value; it contains nothing of the server but the
    limit, so a handler may send it back: `{"status": exc.status, "payload": {"message":
    str(exc)}}`, or let it escape, which answers the same.

    Args:
        message: what was refused and why.
        limit: the option that refused it, `"max_topics"` or `"max_topic_bytes"`.
    """

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class InvalidPosition(BadRequest, ValueError):
    """A resume position (`since`) that is not `None` nor `{"offset": n, "epoch": e}`."""


class PresenceInfoTooLarge(BadRequest, ValueError):
    """`ws.subscribe(topic, presence=info)` refused: `info` encodes to more than
    `presence_max_info_bytes`. The info comes from the client, so it is the client's mistake:
    a handler that lets it escape answers 400 with the sizes, not a 500.
    """


class EncodeError(ObservableSocketError, TypeError):
    """A reply or push holds a value JSON cannot express (a set, a custom object...)."""


class ConnectionClosed(ObservableSocketError):
    """The connection is closing or closed: `ws.push()` refuses, a client request fails.

    Args:
        reason: the close reason, or why the socket was given up.
        code: the close code (1006 when the socket died without a close frame), or None
            when there is none to report (the server's own refusals).
        may_have_reached_server: False when the request was certainly not sent; True when it
            was written to the socket and the server may have run it. It is never resent.
        route: the request's route, when the error belongs to one.
    """

    def __init__(
        self,
        reason: str = "",
        *,
        code: int | None = None,
        may_have_reached_server: bool = False,
        route: str | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.may_have_reached_server = may_have_reached_server
        self.route = route
        if code is None and route is None:
            # the server's refusal of a push: the reason says it all
            super().__init__(reason or "connection closed")
            return
        where = f"request {route!r}: " if route is not None else ""
        detail = f"code {code}" if code is not None else "no close code"
        if reason:
            detail += f", {reason!r}"
        message = f"{where}connection closed ({detail})"
        if route is not None:
            message += (
                "; the request may have reached the server and was not resent"
                if may_have_reached_server
                else "; the request was not sent"
            )
        super().__init__(message)


class ClientError(ObservableSocketError):
    """Base class of the client's and the test client's other exceptions."""


class ConnectFailed(ClientError, ConnectionError):
    """The WebSocket handshake failed: refused, unreachable, timed out or rejected by HTTP.

    Args:
        message: what failed.
        status: the HTTP status that refused the handshake (503 for a server that asks to
            be retried), or None when no HTTP answer came.
        retry_after: the seconds the server's `Retry-After` asked to wait, or None.
    """

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RequestTimeout(ClientError, TimeoutError):
    """No answer to a request within its timeout (a late answer is dropped).

    Attributes:
        route, uuid: the request's.
        timeout: the seconds waited.
        sent: whether the frame was written before the time ran out.
    """

    def __init__(self, route: str, uuid: str, timeout: float, sent: bool) -> None:
        self.route = route
        self.uuid = uuid
        self.timeout = timeout
        self.sent = sent
        state = "sent" if sent else "still waiting for a connection"
        super().__init__(
            f"no answer to request {route!r} (uuid {uuid}) within {timeout} s ({state})"
        )


class HandshakeRejected(ClientError):
    """The app closed the socket during the handshake, or accepted it and closed at once."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"the app refused the WebSocket: close code {code} {reason!r}")
