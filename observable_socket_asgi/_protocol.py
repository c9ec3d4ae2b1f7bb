"""The per-connection rules of the protocol, without I/O: what to do with each frame and push.

`Protocol` is the sans-I/O half of a connection (the I/O half is `server/connection.py`). It never
awaits, never reads a clock and never sees ASGI: the shell hands it a frame and the time
(`loop.time()`), and it answers with what to do. So every rule here is tested with plain
calls and a fake clock (`tests/test_protocol.py`).

Rules (this module alone decides them):

    frames    each frame counts as in flight from the moment it is read until its reply
              has been handed to the server (`reply_sent()`); a frame is answered at once
              with 413 (too large), 400 (malformed), PONG (heartbeat), 404 (no such route)
              or 429 (over a token bucket), or dispatched to its route.
    bytes     `buffered` counts the bytes held for the client: requests read and not yet
              answered, frames read ahead and held unparsed, replies and pushes handed to the
              writer and not yet taken by the server. The shell reports them (`hold()`,
              `release()`); `max_buffered_bytes` bounds them.
    reading   at `max_in_flight` frames in flight, or `max_buffered_bytes` held, the shell
              stops reading (`paused()`), so TCP backpressure, not memory, absorbs a client
              that sends faster than it reads. While paused it still reads frames ahead and
              holds them unparsed (`may_read_ahead()`: up to `max_in_flight` of them, within
              the byte budget), only to hear a client that leaves while every slot is held.
    buckets   one token bucket per connection (`rate_limit`), and one per route that has its
              own; a request spends a token of its route's bucket if it has one, else of the
              connection's. A malformed frame or an unknown route spends one of the
              connection's too: every frame that makes the server work counts. PING is never
              limited. Refusals (429) draw on a second bucket of the same size (at least 10)
              and window: a client that empties it too keeps sending past its limit and is
              `abusive` (close 1008).
    pushes    pushes waiting behind a busy writer are bounded by `max_queued_pushes` and by
              the byte budget; past either `slow_consumer` applies: close with 1013, or drop
              the oldest queued push. Replies are never dropped.
    idle      no frame (PING included) for `idle_timeout` seconds: close with 1001.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import Enum

from ._route import Route
from .envelope import PING, Request, encode_error, encode_pong, parse_request
from .errors import ProtocolError
from .options import Settings
from .status import Status

__all__ = ["Bucket", "Protocol", "PushAction", "Settings"]

logger = logging.getLogger("observable_socket_asgi.protocol")


class PushAction(Enum):
    """What to do with a push, given how many are already waiting for the writer."""

    #: send it, or queue it behind the write in progress
    SEND = "send"
    #: drop the oldest queued push (already uncounted), then queue this one
    DROP_OLDEST = "drop_oldest"
    #: a slow consumer: drop every queued push (already uncounted) and this one, close 1013
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
    """One connection's protocol state: in-flight count, buckets, queued pushes, last frame.

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
        "in_flight",
        "last_seen",
        "max_buffered_bytes",
        "max_in_flight",
        "queued_pushes",
        "settings",
    )

    def __init__(self, settings: Settings, routes: Mapping[str, Route], now: float) -> None:
        self.settings = settings
        self._routes = routes
        # copied out of `settings` for the per-frame path: one attribute lookup, not two
        self._heartbeat = settings.heartbeat
        self._max_bytes = settings.max_message_bytes
        self.max_in_flight = settings.max_in_flight
        #: frames read whose reply has not yet been handed to the server
        self.in_flight = 0
        #: pushes waiting behind the writer (replies waiting are not counted)
        self.queued_pushes = 0
        self.max_buffered_bytes = settings.max_buffered_bytes
        #: bytes held for this client (see "bytes" in the module docstring)
        self.buffered = 0
        #: set when the client keeps sending past its rate limit: the shell closes with 1008
        self.abusive = False
        # 429s given, in a bucket of the limit's size: made on the first refusal
        self._refusals: Bucket | None = None
        #: when the last frame arrived
        self.last_seen = now
        rate = settings.rate_limit
        # the connection's bucket; None when the router has no rate limit
        self._bucket = None if rate is None else Bucket(rate[0], rate[1], now)
        # buckets of routes with a rate limit of their own, made on first use
        self._route_buckets: dict[str, Bucket] | None = None

    # Frames

    def receive(self, data: str | bytes, now: float) -> tuple[Route, Request] | str:
        """Decide what to do with one frame: a reply frame to send as is, or a dispatch.

        Returns:
            An encoded reply (413, 400, PONG, 404 or 429) for the shell to write, or the
            `(route, request)` to serve. Either way the frame now counts as in flight until
            `reply_sent()`. A plain tuple, not a decision object: this runs for every frame.
        """
        self.last_seen = now
        self.in_flight += 1
        bucket = self._bucket
        try:
            request = parse_request(data, self._max_bytes)
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
        return route, request

    def reply_sent(self) -> None:
        """A reply (or the frame it answers, on a closed connection) has left: one slot frees."""
        self.in_flight -= 1

    def paused(self) -> bool:
        """True while `max_in_flight` frames are in flight or `max_buffered_bytes` are held:
        stop reading until a reply leaves."""
        return self.in_flight >= self.max_in_flight or self.buffered >= self.max_buffered_bytes

    def may_read_ahead(self, held_frames: int) -> bool:
        """While paused, whether one more frame may be read and held unparsed (to hear a
        client that leaves): fewer than `max_in_flight` held, and bytes to spare."""
        return held_frames < self.max_in_flight and self.buffered < self.max_buffered_bytes

    # Bytes

    def hold(self, nbytes: int) -> None:
        """The shell now holds `nbytes` more for this client."""
        self.buffered += nbytes

    def release(self, nbytes: int) -> None:
        """The shell no longer holds `nbytes` of them."""
        self.buffered -= nbytes

    # Pushes

    def push(self, writer_busy: bool, nbytes: int = 0) -> PushAction:
        """Decide what to do with a new push of `nbytes`; the counts of dropped pushes are
        already taken.

        A push is queued only behind a busy writer, so only then can a bound be reached:
        `max_queued_pushes`, or the byte budget.
        """
        if not writer_busy or (
            self.queued_pushes < self.settings.max_queued_pushes
            and self.buffered + nbytes <= self.max_buffered_bytes
        ):
            return PushAction.SEND
        if self.settings.slow_consumer == "drop_oldest":
            self.queued_pushes -= 1
            return PushAction.DROP_OLDEST
        self.queued_pushes = 0
        return PushAction.CLOSE

    def push_queued(self) -> None:
        """A push went into the writer's queue."""
        self.queued_pushes += 1

    def push_dequeued(self) -> None:
        """A queued push left the queue (written, or about to be)."""
        self.queued_pushes -= 1

    def queue_dropped(self) -> None:
        """The writer's queue was emptied without sending: the connection is over."""
        self.queued_pushes = 0

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
