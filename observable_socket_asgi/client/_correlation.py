"""The client's side of the protocol, with no I/O: which answer belongs to which request.

Shared by the real client (`_client.py`) and the in-process test client (`testing.py`), which
differ only in how frames travel. The shell creates a waiter per request (an asyncio future,
say), registers it here under the request's uuid, and hands every frame it reads to
`receive()`, which says what the frame is:

    `Pong`     the answer to a heartbeat PING.
    `Answer`   the reply to a pending request: the shell resolves `Answer.waiter`. A
               `request("PING")` is one too: its PONG answers it like any reply.
    `Pushed`   a message nobody asked for; the shell delivers it (callback or buffer).
    `Dropped`  the late answer to a request nobody waits for any more (a `send()`, a PING
               of a server without heartbeat, a timed-out or failed request). It carries
               the route of a `send()`, so the shell can report an error answer to it.

A reply is recognised by its uuid alone: the client's uuids are uuid4 strings, and a
server's push uuids can never take that shape. The uuids whose answers are no longer wanted
are remembered, boundedly (oldest forgotten first), so a late answer is not taken for a push.

`Pending` is the waiter both shells register: an asyncio future with the request's route and
whether it was sent, which the close of a connection fails (`fail_pending`) with the
`ConnectionClosed` that says whether the request may have reached the server.

`PushBuffer` holds pushes until they are read, with its overflow policy: when full it drops
the oldest push (a listener wants what is current) or the newest, and counts the loss.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from ..envelope import PONG, Push, Response, parse_message, push_from, response_from
from ..errors import ConnectionClosed
from ..types import Uuid

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "IGNORED_MAX",
    "Answer",
    "Correlator",
    "Dropped",
    "Incoming",
    "Overflow",
    "Pending",
    "Pong",
    "PushBuffer",
    "Pushed",
    "fail_pending",
    "report_failed_send",
]

#: how many uuids whose answers nobody waits for are remembered, to drop their late answers
IGNORED_MAX = 4096

Overflow = Literal["drop_oldest", "drop_newest"]

W = TypeVar("W")


# What a frame from the server is


@dataclass(frozen=True, slots=True)
class Pong:
    """The server's PONG."""


@dataclass(frozen=True, slots=True)
class Answer(Generic[W]):
    """The reply to a pending request, with the waiter registered for it."""

    waiter: W
    response: Response


@dataclass(frozen=True, slots=True)
class Pushed:
    """A push: a frame that answers no request of this client."""

    push: Push


@dataclass(frozen=True, slots=True)
class Dropped:
    """A late answer to a request whose answer nobody waits for.

    `route` is the route of a `send()` (whose error answer deserves a warning), None for
    an answer that was given up on (a timeout, a heartbeat PING).
    """

    uuid: Uuid
    route: str | None
    response: Response


Incoming = Pong | Answer[W] | Pushed | Dropped


class Correlator(Generic[W]):
    """Pending requests by uuid, and the decision of what each incoming frame is.

    Args:
        ignored_max: how many unwanted uuids to remember.
    """

    def __init__(self, ignored_max: int = IGNORED_MAX) -> None:
        # requests waiting for their answer: uuid -> the shell's waiter
        self._pending: dict[str, W] = {}
        # uuids whose answers are dropped on arrival, with the route of a send() (else
        # None); an ordered dict as a bounded set
        self._ignored: OrderedDict[Uuid, str | None] = OrderedDict()
        self._ignored_max = ignored_max

    # Public API

    @property
    def in_flight(self) -> int:
        """The number of requests waiting for their answer."""
        return len(self._pending)

    def waits_for(self, uuid: str) -> bool:
        """True while a request `uuid` is waiting for its answer."""
        return uuid in self._pending

    def expect(self, uuid: str, waiter: W) -> None:
        """Register `waiter` for the answer to the request `uuid`."""
        self._pending[uuid] = waiter

    def forget(self, uuid: str) -> W | None:
        """Stop waiting for `uuid` (timeout, cancel); its late answer will be dropped.

        Returns the waiter if it was still pending, else None.
        """
        waiter = self._pending.pop(uuid, None)
        if waiter is not None:
            self.ignore(uuid)
        return waiter

    def ignore(self, uuid: Uuid, route: str | None = None) -> None:
        """Drop the answer to `uuid` when it comes (a `send()` to `route`, a PING)."""
        ignored = self._ignored
        ignored[uuid] = route
        if len(ignored) > self._ignored_max:
            ignored.popitem(last=False)

    def take_all(self) -> list[W]:
        """Remove every pending request (the connection closed) and return their waiters.

        Their answers, should any still come, are dropped.
        """
        pending, self._pending = self._pending, {}
        for uuid in pending:
            self.ignore(uuid)
        return list(pending.values())

    def receive(self, data: str | bytes) -> Incoming[W]:
        """Say what a frame from the server is, resolving the pending request it answers.

        Raises:
            ProtocolError: the frame is not a JSON object.
        """
        obj = parse_message(data)
        uuid = obj.get("uuid")
        if type(uuid) is str:
            # first: a PONG that answers request("PING") is that request's answer
            waiter = self._pending.pop(uuid, None)
            if waiter is not None:
                return Answer(waiter, response_from(obj))
        if obj.get("route") == PONG:
            if type(uuid) is str:
                self._ignored.pop(uuid, None)
            return Pong()
        if (type(uuid) is str or type(uuid) is int) and uuid in self._ignored:
            route = self._ignored.pop(uuid)
            return Dropped(uuid, route, response_from(obj))
        return Pushed(push_from(obj))


class Pending:
    """One request waiting for its answer.

    Args:
        future: what the request's caller awaits.
        route: the request's route, named by the error a close gives it.
        sent: whether the frame was handed to the socket (see `sent` below).
    """

    __slots__ = ("future", "route", "sent")

    def __init__(self, future: asyncio.Future[Response], route: str, sent: bool = False) -> None:
        self.future = future
        self.route = route
        #: set just before the frame is handed to the socket: from then on the server may
        #: have it, and a close says so
        self.sent = sent

    def answer(self, response: Response) -> None:
        """Resolve the request with its answer (unless its caller gave up already)."""
        if not self.future.done():
            self.future.set_result(response)

    def fail(self, code: int | None, reason: str) -> None:
        """Fail the request: its connection closed with `code` and `reason`."""
        if not self.future.done():
            self.future.set_exception(
                ConnectionClosed(
                    reason, code=code, may_have_reached_server=self.sent, route=self.route
                )
            )


def fail_pending(protocol: Correlator[Pending], code: int | None, reason: str) -> None:
    """Fail every pending request of `protocol`: the connection closed."""
    for pending in protocol.take_all():
        pending.fail(code, reason)


class PushBuffer:
    """Pushes waiting to be read, bounded by count, with an overflow policy.

    Args:
        max_pushes: how many pushes it holds; None for no bound (the test client).
        overflow: which push a full buffer loses, `"drop_oldest"` or `"drop_newest"`.

    Raises:
        ValueError: a bound below 1 or an unknown policy.
    """

    def __init__(self, max_pushes: int | None = None, overflow: Overflow = "drop_oldest") -> None:
        if overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"overflow must be 'drop_oldest' or 'drop_newest', got {overflow!r}")
        if max_pushes is not None and max_pushes < 1:
            raise ValueError(f"max_pushes must be at least 1, got {max_pushes}")
        self.max_pushes = max_pushes
        self.overflow: Overflow = overflow
        #: pushes lost to a full buffer so far
        self.dropped = 0
        self._pushes: deque[Push] = deque()
        # True from the first drop until the buffer is emptied: one warning per episode
        self._overflowing = False

    def __len__(self) -> int:
        return len(self._pushes)

    def __iter__(self) -> Iterator[Push]:
        return iter(self._pushes)

    def add(self, push: Push) -> bool:
        """Store `push`, applying the overflow policy.

        Returns True when this push starts an overflow episode (the shell warns once).
        """
        pushes = self._pushes
        started = False
        if self.max_pushes is not None and len(pushes) >= self.max_pushes:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = started = True
            if self.overflow == "drop_newest":
                return started
            pushes.popleft()
        pushes.append(push)
        return started

    def pop(self) -> Push:
        """Return the oldest push.

        Raises:
            IndexError: the buffer is empty.
        """
        push = self._pushes.popleft()
        if not self._pushes:
            self._overflowing = False
        return push


def report_failed_send(log: logging.Logger, dropped: Dropped) -> None:
    """Log, as a warning, the error answer to a `send()` (a dropped answer that was not 2xx)."""
    response = dropped.response
    if dropped.route is None or response.ok:
        return
    log.warning(
        "send() to route %r was answered %d: %r",
        dropped.route,
        response.status,
        response.payload,
        extra={"route": dropped.route, "uuid": dropped.uuid, "status": response.status},
    )
