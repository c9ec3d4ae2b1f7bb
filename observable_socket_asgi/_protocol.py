"""The per-connection rules of the protocol, without I/O: what to do with each frame and push.

`Protocol` is the sans-I/O half of a connection (the I/O half is `server/connection.py`). It never
awaits, never reads a clock and never sees ASGI sends: the shell feeds it events (a frame read,
a request done, a write started or done, a push) with the time (`loop.time()`), and it answers
with what to do: a reply to write, a request to dispatch, the next frame for the writer, a push
to queue, drop or close on. It owns every count and byte of the connection and the queue of
frames waiting for the writer; the shell never assigns its attributes, so every rule here is
tested with plain calls and a fake clock (`tests/test_protocol.py`).

Rules (this module alone decides them):

    frames    each frame counts as in flight from the moment it is read (`frame_read()`)
              until its reply has been handed to the server (`write_done()`); a frame is
              answered at once with 413 (too large), 400 (malformed), PONG (heartbeat), 404
              (no such route) or 429 (over a token bucket), or dispatched to its route.
    bytes     `buffered` counts the bytes held for the client: requests read and not yet
              answered (`frame_read()` to `request_done()`), frames read ahead and held
              unparsed, replies and pushes handed to the writer and not yet taken by the
              server (`write_started()` or a queueing event, to `write_done()`);
              `max_buffered_bytes` bounds them.
    reading   at `max_in_flight` frames in flight, or `max_buffered_bytes` held, the shell
              stops reading (`paused()`), so TCP backpressure, not memory, absorbs a client
              that sends faster than it reads. While paused it still reads frames ahead and
              holds them here unparsed (`read_ahead()`, while `may_read_ahead()`: up to
              `max_in_flight` of them, within the byte budget), only to hear a client that
              leaves while every slot is held; `next_held()` gives them back in order.
    writing   one writer at a time (`writing`): a frame that finds it busy waits in `out`,
              in order; `write_done()` hands the writer the next one. Replies always queue.
    buckets   one token bucket per connection (`rate_limit`), and one per route that has its
              own; a request spends a token of its route's bucket if it has one, else of the
              connection's. A malformed frame or an unknown route spends one of the
              connection's too: every frame that makes the server work counts. PING is never
              limited. Refusals (429) draw on a second bucket of the same size (at least 10)
              and window: a client that empties it too keeps sending past its limit and is
              `abusive` (close 1008).
    pushes    pushes waiting behind a busy writer are bounded by `max_queued_pushes` and by
              the byte budget; past either `slow_consumer` applies: close with 1013 (every
              queued push is dropped), or drop the oldest queued push. Replies are never
              dropped.
    idle      no frame (PING included) for `idle_timeout` seconds: close with 1001.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

from ._route import Route
from .envelope import PING, Envelope, encode_error, encode_pong, read_request
from .errors import ProtocolError
from .status import Status

if TYPE_CHECKING:
    from .options import Settings

__all__ = ["Bucket", "Protocol", "PushAction", "message_size"]

logger = logging.getLogger("observable_socket_asgi.protocol")

#: a frame waiting for the writer: (frame, is_reply)
Queued = tuple[str, bool]


def message_size(message: Mapping[str, Any]) -> int:
    """The bytes of a `websocket.receive` message's frame, text or binary."""
    return len(message.get("text") or message.get("bytes") or b"")


class PushAction(Enum):
    """What became of a push that found the writer busy (`Protocol.push()`)."""

    #: queued behind the write in progress, within the bounds
    QUEUED = "queued"
    #: queued, after the oldest queued push was dropped to make room
    DROPPED_OLDEST = "dropped_oldest"
    #: a slow consumer: every queued push and this one are dropped; close with 1013
    CLOSE = "close"


class Bucket:
    """A token bucket: `rate` messages per `per` seconds, bursts up to `rate`."""

    __slots__ = ("capacity", "refill", "stamp", "tokens")

    def __init__(self, rate: int, per: float, now: float) -> None:
        self.capacity = float(rate)
        self.refill = rate / per
        self.tokens = float(rate)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; refill first for the time since the last call."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


_RATE_LIMITED = "rate limit exceeded, slow down"

# The fewest 429s a connection may draw within a limit's window before it counts as abusive.
_MIN_REFUSALS = 10


class Protocol:
    """One connection's protocol state and output: counts, bytes, buckets, the writer's queue.

    Read its attributes freely; change them only through its events (the methods).

    Args:
        settings: the router's frozen options.
        routes: the router's routes by name (read, never changed here).
        now: the time the connection opened, on the clock later calls use.
    """

    __slots__ = (
        "_bucket",
        "_heartbeat",
        "_max_bytes",
        "_refusals",
        "_route_buckets",
        "_routes",
        "abusive",
        "buffered",
        "held",
        "in_flight",
        "last_seen",
        "max_buffered_bytes",
        "max_in_flight",
        "out",
        "queued_pushes",
        "settings",
        "writing",
    )

    def __init__(self, settings: Settings, routes: Mapping[str, Route], now: float) -> None:
        self.settings = settings
        self._routes = routes
        # copied out of `settings` for the per-frame path: one attribute lookup, not two
        self._heartbeat = settings.heartbeat
        self._max_bytes = settings.max_message_bytes
        self.max_in_flight = settings.max_in_flight
        self.max_buffered_bytes = settings.max_buffered_bytes
        #: frames read whose reply has not yet been handed to the server
        self.in_flight = 0
        #: bytes held for this client (see "bytes" in the module docstring)
        self.buffered = 0
        #: when the last frame arrived
        self.last_seen = now
        #: set when the client keeps sending past its rate limit: the shell closes with 1008
        self.abusive = False
        #: a frame is being handed to the server: others wait in `out`
        self.writing = False
        #: frames waiting for the writer, in order: (frame, is_reply); made on first contention
        self.out: deque[Queued] | None = None
        #: pushes in `out` (replies waiting are not counted)
        self.queued_pushes = 0
        #: frames read ahead while paused, unparsed, in order; made on first use
        self.held: deque[Mapping[str, Any]] | None = None
        # 429s given, in a bucket of the limit's size: made on the first refusal
        self._refusals: Bucket | None = None
        rate = settings.rate_limit
        # the connection's bucket; None when the router has no rate limit
        self._bucket = None if rate is None else Bucket(rate[0], rate[1], now)
        # buckets of routes with a rate limit of their own, made on first use
        self._route_buckets: dict[str, Bucket] | None = None

    # Reading

    def serving_started(self, now: float) -> None:
        """The connection is accepted and served: the idle clock starts now."""
        self.last_seen = now

    def frame_read(self, data: str | bytes, now: float) -> tuple[Route, Envelope] | str:
        """Decide what to do with one frame: a reply frame to write as is, or a dispatch.

        Returns:
            An encoded reply (413, 400, PONG, 404 or 429) for the shell to write, or the
            `(route, request)` to serve, whose frame's bytes are now held until
            `request_done(len(data))`. Either way the frame counts as in flight until its
            reply's `write_done()`. A plain tuple, not a decision object: this runs for
            every frame.
        """
        self.last_seen = now
        self.in_flight += 1
        bucket = self._bucket
        try:
            request = read_request(data, self._max_bytes)
        except ProtocolError as exc:
            logger.debug("bad frame (uuid %r): %s", exc.uuid, exc.message)
            if bucket is not None and not bucket.take(now):
                return self._refuse(exc.uuid, bucket, now)
            return encode_error(exc.status, exc.uuid, exc.message)
        name = request.route
        route = self._routes.get(name)
        if route is None:
            if name == PING and self._heartbeat:
                return encode_pong(request.uuid)
            if bucket is not None and not bucket.take(now):
                return self._refuse(request.uuid, bucket, now)
            return encode_error(Status.NOT_FOUND, request.uuid, f"route not found: {name}")
        if bucket is not None or route.rate_limit is not None:
            refused_by = self._allow(route, now)
            if refused_by is not None:
                return self._refuse(request.uuid, refused_by, now)
        self.buffered += len(data)
        return route, request

    def request_done(self, nbytes: int) -> None:
        """A dispatched request's reply is built (or it was cancelled): its frame's bytes
        are no longer held."""
        self.buffered -= nbytes

    def paused(self) -> bool:
        """True while `max_in_flight` frames are in flight or `max_buffered_bytes` are held:
        stop reading until a reply leaves."""
        return self.in_flight >= self.max_in_flight or self.buffered >= self.max_buffered_bytes

    def may_read_ahead(self) -> bool:
        """While paused, whether one more frame may be read and held unparsed (to hear a
        client that leaves): fewer than `max_in_flight` held, and bytes to spare."""
        held = 0 if self.held is None else len(self.held)
        return held < self.max_in_flight and self.buffered < self.max_buffered_bytes

    def read_ahead(self, message: Mapping[str, Any], now: float) -> None:
        """A frame read while paused: hold it, unparsed, for its turn; the client is there."""
        held = self.held
        if held is None:
            held = self.held = deque()
        held.append(message)
        self.buffered += message_size(message)
        self.last_seen = now

    def next_held(self) -> Mapping[str, Any] | None:
        """The oldest frame read ahead, no longer held (`frame_read()` counts it again), or
        None."""
        held = self.held
        if not held:
            return None
        message = held.popleft()
        self.buffered -= message_size(message)
        return message

    def drop_held(self) -> None:
        """The client left: the frames read ahead will never be answered."""
        held = self.held
        while held:
            self.buffered -= message_size(held.popleft())

    # Writing

    def write_started(self, nbytes: int, freed: int = 0) -> None:
        """The shell hands a frame of `nbytes` to the server: it is the writer until
        `write_done()` says there is nothing more, or `write_stopped()`. A reply passes its
        request's `freed` bytes, no longer held (`request_done()` in the same event)."""
        self.writing = True
        self.buffered += nbytes - freed

    def write_done(self, nbytes: int, is_reply: bool) -> Queued | None:
        """The server took the frame of `nbytes`: a reply frees its slot. Return the next
        frame for the writer (its bytes stay held until its own `write_done()`), or None:
        the writer is free."""
        self.buffered -= nbytes
        if is_reply:
            self.in_flight -= 1
        out = self.out
        if not out:
            self.writing = False
            return None
        queued = out.popleft()
        if not queued[1]:
            self.queued_pushes -= 1
        return queued

    def write_stopped(self, nbytes: int) -> None:
        """The write of a frame of `nbytes` ended without `write_done()` (it failed, was
        cancelled, or a task finished it): its bytes are freed, the writer is free; what
        waits in `out` stays for whoever writes next (`take_queued()`)."""
        self.buffered -= nbytes
        self.writing = False

    def reply_sent(self, freed: int = 0) -> None:
        """A reply that will never be written (the connection is over) frees its slot, and
        its request's `freed` bytes."""
        self.in_flight -= 1
        self.buffered -= freed

    def queue_reply(self, frame: str, freed: int = 0) -> None:
        """A reply found the writer busy: it waits its turn; replies are never dropped. Its
        request's `freed` bytes are no longer held."""
        self.buffered -= freed
        self._queue(frame, True)

    def push(self, frame: str) -> tuple[PushAction, list[str]]:
        """A push found the writer busy: queue it within the bounds, or apply the
        slow-consumer policy past them.

        Returns:
            What became of it, and the queued pushes dropped for it (their bytes freed):
            none when QUEUED, the oldest when DROPPED_OLDEST, all of them when CLOSE (and
            `frame` is dropped too).
        """
        if (
            self.queued_pushes < self.settings.max_queued_pushes
            and self.buffered + len(frame) <= self.max_buffered_bytes
        ):
            self._queue(frame, False)
            return PushAction.QUEUED, []
        if self.settings.slow_consumer == "drop_oldest":
            dropped = self._drop_oldest_push()
            self._queue(frame, False)
            return PushAction.DROPPED_OLDEST, dropped
        return PushAction.CLOSE, self._drop_pushes()

    def take_queued(self) -> Queued | None:
        """The next waiting frame, out of the queue and no longer held (the writer that
        takes it holds it again), or None."""
        out = self.out
        if not out:
            return None
        frame, is_reply = out.popleft()
        self.buffered -= len(frame)
        if not is_reply:
            self.queued_pushes -= 1
        return frame, is_reply

    def drop_queue(self) -> tuple[int, list[str]]:
        """The connection is over: nothing waiting or read ahead will be written or read.

        Returns:
            How many waiting replies were dropped (their slots are freed) and the pushes
            dropped.
        """
        out = self.out
        replies = 0
        pushes: list[str] = []
        while out:
            frame, is_reply = out.popleft()
            self.buffered -= len(frame)
            if is_reply:
                replies += 1
            else:
                pushes.append(frame)
        self.in_flight -= replies
        self.queued_pushes = 0
        self.drop_held()
        return replies, pushes

    # Idle

    def idle_wait(self, now: float) -> float | None:
        """Return how long to wait before asking again, or None if the connection is idle.

        Only meaningful when `settings.idle_timeout` is set.
        """
        timeout = self.settings.idle_timeout
        assert timeout is not None
        idle = now - self.last_seen
        if idle >= timeout:
            return None
        return timeout - idle

    # Private methods

    def _queue(self, frame: str, is_reply: bool) -> None:
        out = self.out
        if out is None:
            out = self.out = deque()
        out.append((frame, is_reply))
        self.buffered += len(frame)
        if not is_reply:
            self.queued_pushes += 1

    def _drop_oldest_push(self) -> list[str]:
        """Drop the oldest waiting push to make room, if one waits."""
        out = self.out
        if out:
            for index, (frame, is_reply) in enumerate(out):
                if not is_reply:
                    del out[index]
                    self.buffered -= len(frame)
                    self.queued_pushes -= 1
                    return [frame]
        return []

    def _drop_pushes(self) -> list[str]:
        """Drop every waiting push, in place (replies keep their order); return them."""
        out = self.out
        if not out:
            return []
        dropped = [frame for frame, is_reply in out if not is_reply]
        replies = [item for item in out if item[1]]
        out.clear()
        out.extend(replies)
        self.buffered -= sum(len(frame) for frame in dropped)
        self.queued_pushes = 0
        return dropped

    def _allow(self, route: Route, now: float) -> Bucket | None:
        """Spend a token for `route`; return the bucket that refused, or None."""
        rate = route.rate_limit
        if rate is not None:
            buckets = self._route_buckets
            if buckets is None:
                buckets = self._route_buckets = {}
            bucket = buckets.get(route.name)
            if bucket is None:
                bucket = buckets[route.name] = Bucket(rate[0], rate[1], now)
        else:
            assert self._bucket is not None
            bucket = self._bucket
        return None if bucket.take(now) else bucket

    def _refuse(self, uuid: str | int | None, bucket: Bucket, now: float) -> str:
        """A 429; past as many of them as the refusing bucket holds (at least
        `_MIN_REFUSALS`) within its window, the client is abusive."""
        refusals = self._refusals
        if refusals is None:
            # The refusing bucket's window, and at least _MIN_REFUSALS in it: a client that
            # retries a route limited to one call a minute a few times is not abusive.
            window = bucket.capacity / bucket.refill
            refusals = self._refusals = Bucket(
                max(int(bucket.capacity), _MIN_REFUSALS), window, now
            )
        if not refusals.take(now):
            self.abusive = True
        return encode_error(Status.TOO_MANY_REQUESTS, uuid, _RATE_LIMITED)
