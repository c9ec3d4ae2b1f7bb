"""The client's lifecycle, with no I/O: its states, the moves between them, and their one setter.

Rules of the client's life (only `StateMachine.move` changes the state, and the socket's
owner in `_connection.py` is the only caller)::

    CONNECTING   the client is new, or its first handshake is under way; `connect()`
                 raises `ConnectFailed` if that handshake fails, and the client is CLOSED.
    OPEN         requests are sent and answered; pushes are delivered.
    RECONNECTING the socket closed: every pending request has already failed with
                 `ConnectionClosed` (nothing is resent); new requests wait, within their
                 timeout, for the next connection. Once reconnected (OPEN again), the calls
                 made with `subscribe()` are sent again with the last position seen.
    CLOSING      `close()` was called: the socket and the client's tasks are being shut down;
                 requests already raise `ConnectionClosed`.
    CLOSED       closed for good: by `close()`, by the server with 1008/1011, because
                 reconnecting is off or gave up, or because the first handshake failed.
                 Requests raise `ConnectionClosed`, `pushes()` ends. Nothing leaves it.

A move the table below does not list is a bug in the client, so it raises instead of
leaving the client in a state nobody planned for. (websockets `protocol.py:State`)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import IntEnum, auto

__all__ = ["MOVES", "ClientState", "StateMachine"]


class ClientState(IntEnum):
    """Where a client is in its life; read it as `client.state`."""

    # in the order of a life, so `state >= CLOSING` reads "closing or closed"; the numbers
    # mean nothing else (they never reach the wire)
    CONNECTING = auto()
    """New, or its first handshake under way."""
    OPEN = auto()
    """A socket is open: requests go out, pushes come in."""
    RECONNECTING = auto()
    """The socket was lost: pending requests failed, new ones wait for the next socket."""
    CLOSING = auto()
    """`close()` is shutting the socket and the client's tasks down; requests fail."""
    CLOSED = auto()
    """Closed for good: requests raise `ConnectionClosed`, `pushes()` ends."""


_S = ClientState

#: every legal move: state -> the states it may go to
MOVES: Mapping[ClientState, frozenset[ClientState]] = {
    _S.CONNECTING: frozenset({_S.OPEN, _S.CLOSING, _S.CLOSED}),
    _S.OPEN: frozenset({_S.RECONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.OPEN, _S.CLOSING, _S.CLOSED}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


class StateMachine:
    """A client's state, changed only through `move()`, which logs and checks every move.

    Args:
        name: what the debug lines call the client (its URL).
        logger: where moves are logged, at debug level.
    """

    __slots__ = ("_logger", "_name", "_state")

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self._name = name
        self._logger = logger
        self._state = ClientState.CONNECTING

    @property
    def state(self) -> ClientState:
        """The current state."""
        return self._state

    def move(self, new: ClientState) -> ClientState:
        """Go to `new` and return the state left.

        Raises:
            RuntimeError: `new` is not a legal move from the current state.
        """
        old = self._state
        if new not in MOVES[old]:
            raise RuntimeError(f"a client cannot go from {old.name} to {new.name}")
        # a few moves per connection: no need to cache isEnabledFor as the message path does
        self._logger.debug("client of %s: %s -> %s", self._name, old.name, new.name)
        self._state = new
        return old
