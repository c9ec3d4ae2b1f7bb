"""What the topics need of a connection: the `Subscriber` protocol, public names only.

The registry holds subscribers, the fan-out hands them pushes, the replay sends them what
they missed, and presence names them; none of these sees a connection's internals. The
server's connection implements this protocol, and any object that does can subscribe (the
tests use plain fakes, with no server).

A subscriber's class may also offer `push_each(subscribers, message)`, a static method that
does `push_nowait(message)` for each of `subscribers` in one call and returns the tasks of
the sends that had to wait; it must accept subscribers of other classes too (through their
`push_nowait`). The fan-out hands a slice to it when the slice's first subscriber has it:
on a publish to many subscribers one call per slice costs less than one per subscriber.
The server's connection offers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Subscriber"]


class Subscriber(Protocol):
    """A connection as the topics see it; hashable (it keys the registry's dicts)."""

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed: it takes no new subscription."""
        ...

    @property
    def member_id(self) -> str:
        """The connection's presence member id, the same for all its topics."""
        ...

    def push_nowait(self, message: dict[str, Any]) -> asyncio.Task[None] | None:
        """Start writing `message` (a `websocket.send` event) at once, behind the writes
        already queued; return the write's task if it had to wait for the socket, else None.

        The fan-out's hot path: the same message object goes to every subscriber of a
        publish, so it must only be read.
        """
        ...

    async def send_frame(self, frame: str) -> None:
        """Write one frame and wait until it is written (replays use it, in order).

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        ...

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run `callback` (sync, once) when the connection closes."""
        ...
