"""The fan-out over stand-in subscribers: no server, no router, only the public protocol."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from observable_socket_asgi.pubsub import fanout
from observable_socket_asgi.pubsub.fanout import Held, SlicedFanout, broadcast, push_message
from observable_socket_asgi.pubsub.subscriber import Subscriber
from tests.fake_subscribers import FakeSubscriber
from tests.helpers import wait_until


async def test_broadcast_hands_one_message_object_to_every_subscriber() -> None:
    """Each subscriber gets the very same message (built once), at once, in the caller's task."""
    subs = [FakeSubscriber() for _ in range(5)]
    message = push_message("frame")
    broadcast(subs, message)
    assert all(s.messages == [message] for s in subs)
    assert all(s.messages[0] is message for s in subs)
    assert message == {"type": "websocket.send", "text": "frame"}


async def test_broadcast_keeps_a_waiting_write_alive_and_does_not_wait_for_it() -> None:
    """A subscriber whose write waits gets a task of its own; the others are not held up."""
    slow, fast = FakeSubscriber(wait=True), FakeSubscriber()
    broadcast([slow, fast], push_message("x"))
    assert fast.frames == ["x"] and slow.frames == []
    slow.gate.set()
    await wait_until(lambda: slow.frames == ["x"])


async def test_a_fanout_slices_a_large_delivery_and_keeps_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past a slice the loop runs before the last subscriber has the push; a second delivery
    queues behind the first, so every subscriber sees them in order."""
    monkeypatch.setattr(fanout, "SLICE_COUNT", 3)
    subs = [FakeSubscriber() for _ in range(10)]
    hub = SlicedFanout({})
    hub.deliver("t", "one", None, list[Subscriber](subs))
    hub.deliver("t", "two", None, list[Subscriber](subs))
    assert [len(s.frames) for s in subs] == [1, 1, 1] + [0] * 7
    await wait_until(lambda: all(len(s.frames) == 2 for s in subs))
    assert all(s.frames == ["one", "two"] for s in subs)


async def test_a_subscriber_catching_up_has_its_pushes_held_with_their_offsets() -> None:
    """A subscriber listed in `holding` for the topic gets nothing live: the push is held."""
    catching_up, live = FakeSubscriber(), FakeSubscriber()
    held: Held = []
    hub = SlicedFanout({"t": {catching_up: held}})
    hub.deliver("t", "p7", 7, [catching_up, live])
    hub.deliver("other", "q", None, [catching_up])
    assert held == [(7, "p7")]
    assert live.frames == ["p7"] and catching_up.frames == ["q"]


async def test_stop_drops_what_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped fan-out hands nothing more out, even to subscribers a delivery listed."""
    monkeypatch.setattr(fanout, "SLICE_COUNT", 1)
    subs = [FakeSubscriber() for _ in range(3)]
    hub = SlicedFanout({})
    hub.deliver("t", "x", None, list[Subscriber](subs))
    await hub.stop()
    await asyncio.sleep(0)
    assert [len(s.frames) for s in subs] == [1, 0, 0]


class EachSubscriber(FakeSubscriber):
    """A stand-in whose class hands out a whole slice in one call, as the server's does."""

    calls: ClassVar[list[list[Subscriber]]] = []

    @staticmethod
    def push_each(subscribers: list[Subscriber], message: dict[str, Any]) -> list[Any]:
        EachSubscriber.calls.append(list(subscribers))
        waiting = []
        for each in subscribers:
            task = each.push_nowait(message)
            if task is not None:
                waiting.append(task)
        return waiting


async def test_broadcast_hands_a_whole_slice_to_a_class_with_push_each() -> None:
    """When the first subscriber's class offers `push_each`, the slice goes to it in one
    call, subscribers of other classes included, and the writes it says wait are kept alive;
    a slice led by a subscriber without it gets one `push_nowait` each."""
    EachSubscriber.calls = []
    slow, fast, plain = EachSubscriber(wait=True), EachSubscriber(), FakeSubscriber()
    broadcast([slow, fast, plain], push_message("x"))
    assert EachSubscriber.calls == [[slow, fast, plain]]
    assert fast.frames == plain.frames == ["x"] and slow.frames == []
    slow.gate.set()
    await wait_until(lambda: slow.frames == ["x"])
    broadcast(iter([plain, fast]), push_message("y"))
    assert len(EachSubscriber.calls) == 1
    assert plain.frames == fast.frames == ["x", "y"]
