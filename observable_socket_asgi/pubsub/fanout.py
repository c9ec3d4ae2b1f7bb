"""The fan-out: one encoded push handed to many subscribers, in slices, in order.

Rules of a delivery (this module alone hands pushes out):

    `broadcast(subscribers, message)` hands one `websocket.send` message to each subscriber
    through its public `push_nowait` (or, in one call, its class's `push_each`): every
    write starts at once in the caller's task and only becomes a task if it has to wait
    for its socket, so a slow subscriber never delays the others (websockets'
    `broadcast()`, over the `Subscriber` protocol).

    `SlicedFanout.deliver()` does that for a topic's subscribers in slices (`SLICE_COUNT`
    subscribers, or `SLICE_BYTES` of frames, whichever comes first): the first slice at
    once, the rest from a task that lets the event loop run between slices, so one publish
    to many subscribers cannot stall every other connection. A delivery made while earlier
    ones are still being handed out waits behind them: each subscriber gets pushes in
    delivery order. A subscriber still catching up on the topic (`replay.py`) has the push
    held for it instead, with its offset, and gets it after its replay.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from .subscriber import Subscriber

__all__ = ["SLICE_BYTES", "SLICE_COUNT", "SlicedFanout", "Held", "broadcast", "push_message"]

#: A delivery hands its frame to at most this many subscribers, or this many bytes of
#: frames (at least one subscriber), before it lets the event loop run other connections.
SLICE_COUNT = 256
SLICE_BYTES = 1024 * 1024

#: pushes held back for a subscriber catching up, as `(offset or None, frame)`
Held = list[tuple[int | None, str]]

# writes that suspended (a busy socket): the loop keeps only weak references to tasks, so
# they are kept here until they finish
_sending: set[asyncio.Task[None]] = set()


def push_message(frame: str) -> dict[str, Any]:
    """The `websocket.send` message of a push frame, built once per publish."""
    return {"type": "websocket.send", "text": frame}


def broadcast(subscribers: Iterable[Subscriber], message: dict[str, Any]) -> None:
    """Hand `message` to every subscriber at once, without waiting for any socket.

    A write that has to wait goes on in a task of its own; a failed write closes only its
    own connection (the subscriber's `push_nowait` sees to that). When the first
    subscriber's class offers `push_each` (see `Subscriber`), it is handed them all in one
    call instead of one `push_nowait` call each.
    """
    batch = subscribers if isinstance(subscribers, list) else list(subscribers)
    if not batch:
        return
    push_each = getattr(type(batch[0]), "push_each", None)
    if push_each is not None:
        waiting: list[asyncio.Task[None]] = push_each(batch, message)
    else:
        waiting = [task for each in batch if (task := each.push_nowait(message)) is not None]
    sending = _sending
    for task in waiting:
        sending.add(task)
        task.add_done_callback(sending.discard)


class _Delivery:
    """One push on its way to the subscribers a delivery found: `done` of them have it."""

    __slots__ = ("done", "frame", "message", "offset", "targets", "topic")

    def __init__(
        self, topic: str, frame: str, offset: int | None, targets: list[Subscriber]
    ) -> None:
        self.topic = topic
        self.frame = frame
        # one message for all: servers only read it, and a dict per subscriber is measurable
        self.message = push_message(frame)
        self.offset = offset
        self.targets = targets
        self.done = 0


class SlicedFanout:
    """Deliveries in order, slice by slice.

    Args:
        holding: topic -> subscribers catching up on it -> their held pushes; the replay
            owns it, this only appends to the lists it finds there.
    """

    def __init__(self, holding: Mapping[str, Mapping[Subscriber, Held]]) -> None:
        self._holding = holding
        # deliveries not yet handed to every subscriber, oldest first: while any is here, a
        # new one queues behind it, so every subscriber gets pushes in delivery order
        self._backlog: deque[_Delivery] = deque()
        # the task handing the backlog out, slice by slice
        self._task: asyncio.Task[None] | None = None

    def deliver(
        self, topic: str, frame: str, offset: int | None, targets: list[Subscriber]
    ) -> None:
        """Hand `frame` to `targets` (a list the caller no longer changes), in order."""
        delivery = _Delivery(topic, frame, offset, targets)
        backlog = self._backlog
        if not backlog:
            self._hand_out(delivery)
            if delivery.done < len(targets):
                backlog.append(delivery)
                self._task = asyncio.get_running_loop().create_task(self._run())
        else:
            backlog.append(delivery)

    async def stop(self) -> None:
        """Drop what is not handed out yet (the server is stopping)."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._backlog.clear()

    def _hand_out(self, delivery: _Delivery) -> None:
        """Hand `delivery` to its next slice of subscribers."""
        per = max(1, min(SLICE_COUNT, SLICE_BYTES // max(1, len(delivery.frame))))
        start = delivery.done
        end = delivery.done = min(len(delivery.targets), start + per)
        batch = delivery.targets[start:end]
        holding = self._holding.get(delivery.topic)
        if holding is not None:
            live = []
            for subscriber in batch:
                held = holding.get(subscriber)
                if held is None:
                    live.append(subscriber)
                else:
                    held.append((delivery.offset, delivery.frame))
            batch = live
        broadcast(batch, delivery.message)

    async def _run(self) -> None:
        """Hand the backlog out slice by slice, in order, yielding to the loop between slices.

        Nobody awaits this task: it cannot fail (a failed write only closes its connection),
        and it ends when the backlog is empty; `stop()` cancels it.
        """
        backlog = self._backlog
        try:
            while backlog:
                await asyncio.sleep(0)
                delivery = backlog[0]
                self._hand_out(delivery)
                if delivery.done >= len(delivery.targets):
                    backlog.popleft()
        finally:
            self._task = None
