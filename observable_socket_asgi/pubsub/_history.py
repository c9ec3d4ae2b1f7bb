"""Topic history, with no I/O: positions (offset within an epoch), bounded logs, resume.

Rules of a position (shared by the in-memory log here and the Redis one):

    Every publish on a topic with history gets the next `offset` of that topic (1, 2, 3, ...)
    within its `epoch`, a short hex string chosen when the topic's log is created. When the
    log is lost (expired after `ttl` seconds without a publish, or Redis restarted empty) a
    later publish starts a new log with a new epoch, so a client holding the old epoch can
    tell that it cannot be told what it missed.

    A log keeps at most `size` pushes and `max_bytes` of frames, and none older than `ttl`
    seconds. A resume "since offset n in epoch e" is `recovered` when the epoch matches and
    every push after n is still kept; then it returns exactly those pushes, in order.

    Only a publish creates a log: a subscribe reads, so what a client subscribes to costs no
    memory, no Redis key, and cannot push other topics' logs out. A topic without a log is at
    offset 0 of an "empty" epoch, `-` then the time it was read (in Redis, `-<ms>` by Redis's
    clock; in memory, `-<history id>.<ms>` by the loop's). A resume from an empty epoch is
    `recovered` while no log could have been lost since that time: less than `ttl` ago (a
    log lives `ttl` after its last publish) and, in memory, no log pushed out by
    `max_topics` since; it then returns every push of the topic's log, from offset 1.

The push frame is encoded once per publish as a template (`split_push`) whose position is
filled in (`fill`) when the offset is known: by this module in memory, by a Lua script in
Redis, with the same text either way.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..envelope import encode_push
from ..errors import InvalidPosition
from ..types import Header, Payload

__all__ = [
    "MemoryHistory",
    "Recovery",
    "Subscription",
    "PushTemplate",
    "check_history_options",
    "fill",
    "new_epoch",
    "parse_since",
    "split_push",
    "unnumbered",
]

# Header names the router owns on topics with history; a publisher's own values are replaced.
OFFSET, EPOCH = "offset", "epoch"

#: how the epoch of a topic nothing was published to starts (a real epoch is hex)
EMPTY = "-"

# Stands for the epoch while the template is encoded. It is random per process, and the text
# around it (`"offset":0,"epoch":"...`) has bare quotes, which no JSON string value can hold,
# so the first match is always the headers' own.
_MARK = "~" + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class PushTemplate:
    """An encoded push with a hole where its position goes."""

    head: str
    tail: str


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a subscribe with history found: the current position and what the client missed.

    Attributes:
        recovered: True when every push after the client's position was still kept (also
            when nothing was missed); False when the epoch differs or the gap is too old,
            and for a subscribe without a position.
        offset: the offset of the newest push on the topic (0 before the first one).
        epoch: the topic's current epoch.
        frames: the missed pushes, oldest first, when `recovered`.
    """

    recovered: bool
    offset: int
    epoch: str
    frames: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscription:
    """What `ws.subscribe()` returns: whether the gap was filled, and the topic's position.

    Attributes:
        recovered: True when every push after the given `since` was delivered before the
            live ones; False without `since`, when the epoch differs, when the gap is older
            than the history, when the history is off or unreachable (reload the state).
        offset: the topic's newest offset when the subscription started (0 before any
            publish), or None when the history is off or unreachable.
        epoch: the topic's epoch, or None when the history is off or unreachable.
    """

    recovered: bool
    offset: int | None
    epoch: str | None


def new_epoch() -> str:
    """A fresh epoch: 12 hex characters, safe to paste into JSON unescaped."""
    return secrets.token_hex(6)


def split_push(topic: str, payload: Payload, headers: Header | None) -> PushTemplate:
    """Encode a push on `topic` once, leaving a hole for its `offset` and `epoch` headers.

    Raises:
        EncodeError: the payload or headers cannot be encoded as JSON.
    """
    fields = {} if headers is None else {k: v for k, v in headers.items() if k not in _OWNED}
    fields[OFFSET] = 0
    fields[EPOCH] = _MARK
    frame = encode_push(topic, payload, fields)
    head, found, tail = frame.partition(_HOLE)
    assert found, "the position hole is always in an encoded push"
    return PushTemplate(head, tail)


def fill(template: PushTemplate, offset: int, epoch: str) -> str:
    """The push frame of `template` at position (`offset`, `epoch`)."""
    return f'{template.head}"offset":{offset},"epoch":"{epoch}"{template.tail}'


def unnumbered(template: PushTemplate) -> str:
    """The push of `template` without a position (its history could not be reached)."""
    head = template.head
    # the hole follows the headers' `{` or the comma after the publisher's own headers
    return (head[:-1] if head.endswith(",") else head) + template.tail


def parse_since(since: object) -> tuple[int, str] | None:
    """Read a client's `since` (`{"offset": n, "epoch": e}` or None) as `(n, e)`.

    Raises:
        InvalidPosition: a `ValueError`: `since` is not None nor such a mapping (a handler
            passes what a client sent, so the message says what was expected).
    """
    if since is None:
        return None
    if isinstance(since, dict):
        offset, epoch = since.get(OFFSET), since.get(EPOCH)
        if type(offset) is int and offset >= 0 and type(epoch) is str:
            return offset, epoch
    raise InvalidPosition(
        f'since must be None or {{"offset": <integer >= 0>, "epoch": <string>}}, got {since!r:.200}'
    )


def check_history_options(size: int, ttl: float, max_bytes: int) -> None:
    """Validate the router's history options.

    Raises:
        ValueError: naming the option and the value it got.
    """
    if type(size) is not int or size < 0:
        raise ValueError(f"history_size must be an integer >= 0, got {size!r}")
    if not (isinstance(ttl, int | float) and ttl > 0):
        raise ValueError(f"history_ttl must be a positive number of seconds, got {ttl!r}")
    if type(max_bytes) is not int or max_bytes < 1:
        raise ValueError(f"history_max_bytes must be an integer >= 1, got {max_bytes!r}")


_OWNED = frozenset({OFFSET, EPOCH})
_HOLE = f'"offset":0,"epoch":"{_MARK}"'


class _Log:
    """One topic's kept pushes: `(offset, published_at, frame)`, oldest first."""

    __slots__ = ("bytes", "created", "entries", "epoch", "top", "touched")

    def __init__(self, epoch: str, now: float) -> None:
        self.epoch = epoch
        # in milliseconds, as an empty epoch holds its time
        self.created = int(now * 1000)
        # the offset of the newest push ever published in this epoch
        self.top = 0
        self.entries: deque[tuple[int, float, str]] = deque()
        self.bytes = 0
        # the last publish (or creation): a log untouched for `ttl` is forgotten
        self.touched = now


class MemoryHistory:
    """Every topic's history in this process: bounded by `size`, `max_bytes` and `ttl`.

    Pure: the caller passes `now` (the event loop's clock), so expiry is tested without
    waiting. Memory is at most about `max_bytes` per topic published to within `ttl`, and
    at most `max_topics` logs: only publishes create a log or push one out, never subscribes.

    Args:
        size: pushes kept per topic.
        ttl: seconds a push is kept; a topic without a publish for this long is forgotten
            (a later publish starts a new epoch).
        max_bytes: characters of frames kept per topic; the oldest go first.
        max_topics: topics with a log; past it the least recently published is forgotten
            (its subscribers' next resume is not recovered).
        epochs: makes a new epoch; injectable for tests.
    """

    def __init__(
        self,
        size: int,
        ttl: float,
        max_bytes: int = 1024 * 1024,
        epochs: Callable[[], str] = new_epoch,
        max_topics: int = 10_000,
    ) -> None:
        check_history_options(size, ttl, max_bytes)
        if type(max_topics) is not int or max_topics < 1:
            raise ValueError(f"history_max_topics must be an integer >= 1, got {max_topics!r}")
        self.size = size
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.max_topics = max_topics
        self._epochs = epochs
        # topic -> its log; insertion order is touch order, so expired logs are at the front
        self._logs: dict[str, _Log] = {}
        # names this history in its empty epochs: another's cannot be resumed here
        self._id = secrets.token_hex(4)
        # when (ms) a log was last pushed out by `max_topics`: empty epochs before it are void
        self._evicted = -1

    # Public API

    @property
    def topics(self) -> int:
        """How many topics have a log."""
        return len(self._logs)

    @property
    def bytes(self) -> int:
        """Characters of frames kept, over every topic."""
        return sum(log.bytes for log in self._logs.values())

    def append(self, topic: str, template: PushTemplate, now: float) -> tuple[int, str, str]:
        """Record a publish on `topic`; return its `(offset, epoch, frame)`."""
        self._sweep(now)
        log = self._logs.pop(topic, None)
        if log is None:
            log = _Log(self._epochs(), now)
        self._logs[topic] = log  # moved to the back: the most recently touched
        self._bound(now)
        log.touched = now
        log.top += 1
        frame = fill(template, log.top, log.epoch)
        entries = log.entries
        entries.append((log.top, now, frame))
        log.bytes += len(frame)
        while len(entries) > self.size or (log.bytes > self.max_bytes and entries):
            log.bytes -= len(entries.popleft()[2])
        return log.top, log.epoch, frame

    def position(self, topic: str, now: float) -> tuple[int, str]:
        """The current `(offset, epoch)` of `topic`; an empty epoch when it has no log."""
        self._sweep(now)
        log = self._logs.get(topic)
        return (0, self._empty(now)) if log is None else (log.top, log.epoch)

    def since(self, topic: str, since: tuple[int, str] | None, now: float) -> Recovery:
        """What a client at position `since` missed on `topic`, if it can be told.

        Reads only: a topic without a log keeps none.
        """
        self._sweep(now)
        log = self._logs.get(topic)
        if since is not None and since[1][:1] == EMPTY:
            if not self._unbroken(since, log, now):
                since = None
            elif log is None:  # nothing published since: nothing missed
                return Recovery(True, 0, self._empty(now))
            else:  # the log began after the client's read: it missed all of it
                since = (0, log.epoch)
        if log is None:
            return Recovery(False, 0, self._empty(now))
        if since is None:
            return Recovery(False, log.top, log.epoch)
        offset, epoch = since
        if epoch != log.epoch or offset > log.top:
            return Recovery(False, log.top, log.epoch)
        if offset == log.top:
            return Recovery(True, log.top, log.epoch)
        entries = log.entries
        horizon = now - self.ttl
        while entries and entries[0][1] <= horizon:
            log.bytes -= len(entries.popleft()[2])
        if not entries or entries[0][0] > offset + 1:
            return Recovery(False, log.top, log.epoch)
        skip = offset + 1 - entries[0][0]
        frames = tuple(frame for _, _, frame in list(entries)[skip:])
        return Recovery(True, log.top, log.epoch, frames)

    # Private methods

    def _empty(self, now: float) -> str:
        return f"{EMPTY}{self._id}.{int(now * 1000)}"

    def _unbroken(self, since: tuple[int, str], log: _Log | None, now: float) -> bool:
        """True when no log of the topic can have been lost since the empty epoch `since`
        was read: it is this history's, under `ttl` old, and nothing was pushed out since."""
        offset, epoch = since
        owner, _, at = epoch[1:].partition(".")
        if offset != 0 or owner != self._id or not at.isdigit():
            return False
        read = int(at)
        return (
            read > self._evicted
            and int(now * 1000) - read < self.ttl * 1000
            and (log is None or log.created >= read)
        )

    def _bound(self, now: float) -> None:
        logs = self._logs
        while len(logs) > self.max_topics:
            del logs[next(iter(logs))]
            self._evicted = int(now * 1000)

    def _sweep(self, now: float) -> None:
        """Forget the logs untouched for `ttl`: they are at the front of the dict."""
        logs = self._logs
        horizon = now - self.ttl
        while logs:
            topic = next(iter(logs))
            if logs[topic].touched > horizon:
                return
            del logs[topic]
