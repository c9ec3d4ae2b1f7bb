"""The idle clocks of a loop's connections: one timer for them all, not one each.

A timer per connection (`loop.call_later`) costs about 600 bytes under uvloop (its handle, a
libuv timer, a context copy and a bound method), more than half of what the router keeps per
idle connection beside the server's own. Here a connection's deadline falls in a bucket one
step wide (an eighth of the timeout) and one timer serves the next bucket due: a watched
connection costs a set entry. A connection idle for `idle_timeout` is closed at most two
steps (a quarter of the timeout) later.

Rules (this module alone keeps them):

    watch     `watch()` puts a connection in the bucket of its deadline and returns the
              bucket's key; a bucket is never one already due, so a connection asked too
              early waits one step more instead of being asked again at once.
    forget    `forget()` takes it out; a closed connection is not kept.
    due       when a timer fires, each connection of every bucket due is taken out and
              asked (`idle_due()`): it closes itself, or watches again with its new deadline.
    timer     one is armed for the earliest bucket; it is never cancelled (a connection
              that comes and goes costs no timer of its own): one that finds nothing due
              arms no other. Only the loop holds a timer, so the clocks hold nothing of it.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Protocol

__all__ = ["IdleClocks", "Watched", "idle_clocks"]

# The steps in one timeout: the finer, the more often the timer fires.
_STEPS = 8


class Watched(Protocol):
    """What the clocks need of a connection."""

    def idle_due(self) -> None: ...


class IdleClocks:
    """The idle deadlines of one loop's connections that share one `idle_timeout`."""

    __slots__ = ("_armed", "_buckets", "_fired", "_step")

    def __init__(self, timeout: float) -> None:
        self._step = timeout / _STEPS
        # bucket key (deadline / step, rounded up) -> the connections due then
        self._buckets: dict[int, set[Watched]] = {}
        # the keys of the timers armed and not yet fired (one, or two for a moment)
        self._armed: set[int] = set()
        # the last key fired: no bucket at or before it is made again
        self._fired = -1

    def watch(self, conn: Watched, deadline: float, loop: asyncio.AbstractEventLoop) -> int:
        """Ask `conn` again at `deadline` (loop time) or one step later; return its key."""
        key = math.ceil(deadline / self._step)
        if key <= self._fired:
            key = self._fired + 1
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            if not self._armed or key < min(self._armed):
                self._arm(key, loop)
        bucket.add(conn)
        return key

    def forget(self, conn: Watched, key: int) -> None:
        """Stop watching `conn`, watched under `key`."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.discard(conn)
            if not bucket:
                del self._buckets[key]

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    # Private methods

    def _arm(self, key: int, loop: asyncio.AbstractEventLoop) -> None:
        self._armed.add(key)
        loop.call_at(key * self._step, self._fire, key, loop)

    def _fire(self, key: int, loop: asyncio.AbstractEventLoop) -> None:
        """A timer is due: ask every connection of every bucket due by now."""
        self._armed.discard(key)
        due = max(key, math.floor(loop.time() / self._step))
        if due > self._fired:
            self._fired = due
        for ready in sorted(ready for ready in self._buckets if ready <= due):
            for conn in self._buckets.pop(ready):
                conn.idle_due()
        if self._buckets:
            first = min(self._buckets)
            if not any(armed <= first for armed in self._armed):
                self._arm(first, loop)


# loop -> idle_timeout -> clocks; a loop that is gone takes its clocks with it
_CLOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, IdleClocks]] = (
    weakref.WeakKeyDictionary()
)


def idle_clocks(loop: asyncio.AbstractEventLoop, timeout: float) -> IdleClocks:
    """The clocks of `loop`'s connections whose idle timeout is `timeout`."""
    by_timeout = _CLOCKS.get(loop)
    if by_timeout is None:
        by_timeout = _CLOCKS[loop] = {}
    clocks = by_timeout.get(timeout)
    if clocks is None:
        clocks = by_timeout[timeout] = IdleClocks(timeout)
    return clocks
