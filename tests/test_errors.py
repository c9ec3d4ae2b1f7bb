"""The exception tree: one ConnectionClosed for both sides, re-exported where it used to be."""

from __future__ import annotations

import observable_socket_asgi
from observable_socket_asgi import client, errors, testing
from observable_socket_asgi.errors import (
    ClientError,
    ConnectFailed,
    ConnectionClosed,
    HandshakeRejected,
    ObservableSocketError,
    RequestTimeout,
)


def test_client_and_testing_reexport_the_same_classes() -> None:
    """`client.ConnectionClosed` is `errors.ConnectionClosed`: one class to catch."""
    assert client.ConnectionClosed is errors.ConnectionClosed
    assert client.ConnectionClosed is observable_socket_asgi.ConnectionClosed
    assert testing.ConnectionClosed is errors.ConnectionClosed
    assert client.ClientError is ClientError
    assert client.ConnectFailed is ConnectFailed
    assert client.RequestTimeout is testing.RequestTimeout is RequestTimeout
    assert testing.HandshakeRejected is HandshakeRejected


def test_tree_and_builtin_bases() -> None:
    """Every error is an ObservableSocketError; the client's also match the builtin they mean."""
    for cls in (ClientError, ConnectFailed, ConnectionClosed, HandshakeRejected, RequestTimeout):
        assert issubclass(cls, ObservableSocketError)
    assert issubclass(ConnectFailed, ConnectionError)
    assert issubclass(RequestTimeout, TimeoutError)
    assert issubclass(HandshakeRejected, ClientError)


def test_server_side_connection_closed_keeps_its_message() -> None:
    """The server's refusal carries only a reason, and says just that."""
    exc = ConnectionClosed("connection is closed")
    assert str(exc) == "connection is closed"
    assert exc.reason == "connection is closed"
    assert exc.code is None and exc.route is None and not exc.may_have_reached_server


def test_client_side_connection_closed_names_code_route_and_fate() -> None:
    """A failed request's error says which request, the close code, and whether it was sent."""
    sent = ConnectionClosed("bye", code=1001, may_have_reached_server=True, route="math/sum")
    assert str(sent) == (
        "request 'math/sum': connection closed (code 1001, 'bye'); "
        "the request may have reached the server and was not resent"
    )
    unsent = ConnectionClosed("", code=1006, route="echo")
    assert str(unsent) == "request 'echo': connection closed (code 1006); the request was not sent"
    assert str(ConnectionClosed("gone", code=1000)) == "connection closed (code 1000, 'gone')"


def test_request_timeout_message() -> None:
    """The timeout names route, uuid, seconds and whether the frame went out."""
    exc = RequestTimeout("slow", "u-1", 0.5, False)
    assert str(exc) == (
        "no answer to request 'slow' (uuid u-1) within 0.5 s (still waiting for a connection)"
    )
    assert exc.sent is False and exc.timeout == 0.5
