"""What the router tells whoever watches it: the observer interface and its fixed labels.

The router holds one optional observer. With neither `metrics_url` nor `tracing` set it is
None and every call site is a single `if observer is not None` test: the per-message path
does no other work, and nothing here (or in `metrics.py` / `tracing.py`) is imported.

An observer is called on the event loop thread only, from the connection shell, the ASGI
dispatch and the backplane; its methods must not raise and must not await. Labels that
reach it are bounded by construction: a route label is the name of a registered route or
one of `UNKNOWN`, `MALFORMED` and `PING`, so a client cannot create series at will.

Handler failures are caught (and answered 500) deep inside the pipeline, below any
observer; `note_failure()` lets the pipeline hand the exception to the observation of the
request it belongs to, through a context variable, at no cost when nothing watches.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "MALFORMED",
    "PING",
    "REFUSAL_REASONS",
    "UNKNOWN",
    "Fanout",
    "Observer",
    "close_code_label",
    "note_failure",
    "status_of",
]

#: the route label of a request naming a route that is not registered (answered 404)
UNKNOWN = "<unknown>"
#: the route label of a frame that is not a usable request (answered 400 or 413)
MALFORMED = "<malformed>"
#: the route label of heartbeats
PING = "PING"

#: why a handshake was refused; `connections_total{outcome="refused_<reason>"}`
REFUSAL_REASONS = ("origin", "capacity", "access", "handshake_timeout", "error")

# Close codes reported under their own number; any other (a client may send any code in
# 3000-4999) is reported as "other", so the series stay bounded.
_KNOWN_CODES = frozenset(range(1000, 1016))

# Set by an observer for the duration of one request; read only when a handler failed.
_failure_sink: contextvars.ContextVar[Callable[[BaseException], None] | None] = (
    contextvars.ContextVar("observable_socket_failure_sink", default=None)
)


def status_of(frame: str) -> int:
    """The status of a reply frame the router encoded (`{"uuid":...,"status":NNN,...}`).

    Only observers need it, so the pipeline does not carry the status beside every frame.
    The first `,"status":` is the envelope's own: inside a JSON string a quote is escaped.
    """
    at = frame.find(',"status":') + 10
    return int(frame[at : at + 3])


def close_code_label(code: int | None) -> str:
    """The `code` label of `disconnects_total`: a standard close code, "none" or "other"."""
    if code is None:
        return "none"
    return str(code) if code in _KNOWN_CODES else "other"


def note_failure(exc: BaseException) -> None:
    """Hand a handler's exception to the observation of the current request, if any."""
    sink = _failure_sink.get()
    if sink is not None:
        sink(exc)


def set_failure_sink(sink: Callable[[BaseException], None] | None) -> contextvars.Token[Any]:
    """Route `note_failure()` in this context to `sink`; reset with the returned token."""
    return _failure_sink.set(sink)


def reset_failure_sink(token: contextvars.Token[Any]) -> None:
    """Undo `set_failure_sink()`."""
    _failure_sink.reset(token)


class Observer:
    """Receives the router's events; every method here does nothing.

    Subclasses override what they record. `request_started()` returns a token that is
    handed back to `request_finished()`; it is the only state an observer keeps per request.
    """

    # Connections

    def connection_accepted(self) -> None:
        """A handshake was accepted; the connection is open."""

    def connection_refused(self, reason: str) -> None:
        """A handshake was refused; `reason` is one of `REFUSAL_REASONS`."""

    def connection_closed(self, code: int | None) -> None:
        """An accepted connection ended with close `code` (None when none was exchanged)."""

    # Requests

    def request_started(self, route: str, headers: Mapping[str, Any], started: float) -> Any:
        """A request for the registered route `route` goes to its handler.

        Args:
            headers: the message's headers (a `traceparent` there is the trace parent).
            started: `time.perf_counter()` when its frame was read.
        """
        return started

    def request_finished(self, token: Any, route: str, status: int | None) -> None:
        """The reply to a started request was handed to the server (or queued behind a write).

        `status` is None when the request ended without a reply (cancelled: the connection
        closed first).
        """

    def answered(self, route: str, status: int, started: float) -> None:
        """The router answered a frame itself: PING, unknown route, malformed, rate limited."""

    # Pushes

    def push_sent(self) -> None:
        """A push frame was handed to the server."""

    def pushes_dropped(self, count: int) -> None:
        """`count` pushes were discarded (slow consumer, drop_oldest, connection closing)."""

    def queued_push_bytes(self, delta: int) -> None:
        """The bytes of pushes waiting for their writer changed by `delta`."""

    def slow_consumer_closed(self) -> None:
        """A connection was closed because it did not read its pushes."""

    # Backplane

    def backplane_connected(self, connected: bool) -> None:
        """The backplane reaches (True) or no longer reaches (False) the other workers."""

    def backplane_dropped(self) -> None:
        """A publish did not reach the other workers."""

    def backplane_published(self, seconds: float) -> None:
        """A publish was carried to the other workers in `seconds`."""

    # Lifecycle

    def shutdown(self) -> None:
        """The router's lifespan is shutting down."""


class Fanout(Observer):
    """Several observers as one (metrics and tracing both on)."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def connection_accepted(self) -> None:
        for observer in self.observers:
            observer.connection_accepted()

    def connection_refused(self, reason: str) -> None:
        for observer in self.observers:
            observer.connection_refused(reason)

    def connection_closed(self, code: int | None) -> None:
        for observer in self.observers:
            observer.connection_closed(code)

    def request_started(self, route: str, headers: Mapping[str, Any], started: float) -> Any:
        return [observer.request_started(route, headers, started) for observer in self.observers]

    def request_finished(self, token: Any, route: str, status: int | None) -> None:
        # Finished in reverse order of start: a tracing context attached last is detached first.
        for observer, each in zip(reversed(self.observers), reversed(token), strict=True):
            observer.request_finished(each, route, status)

    def answered(self, route: str, status: int, started: float) -> None:
        for observer in self.observers:
            observer.answered(route, status, started)

    def push_sent(self) -> None:
        for observer in self.observers:
            observer.push_sent()

    def pushes_dropped(self, count: int) -> None:
        for observer in self.observers:
            observer.pushes_dropped(count)

    def queued_push_bytes(self, delta: int) -> None:
        for observer in self.observers:
            observer.queued_push_bytes(delta)

    def slow_consumer_closed(self) -> None:
        for observer in self.observers:
            observer.slow_consumer_closed()

    def backplane_connected(self, connected: bool) -> None:
        for observer in self.observers:
            observer.backplane_connected(connected)

    def backplane_dropped(self) -> None:
        for observer in self.observers:
            observer.backplane_dropped()

    def backplane_published(self, seconds: float) -> None:
        for observer in self.observers:
            observer.backplane_published(seconds)

    def shutdown(self) -> None:
        for observer in self.observers:
            observer.shutdown()
