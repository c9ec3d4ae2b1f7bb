"""The transport interface is all a transport needs: a tiny broker in a dict carries pushes
between two hubs, with the hub's registry, fan-out, replay and presence on top."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from observable_socket_asgi.options import HistoryOptions, IdempotencyOptions, PresenceOptions
from observable_socket_asgi.pubsub._idempotency import MemoryIdempotencyStore
from observable_socket_asgi.pubsub.memory import InMemoryBackplane
from observable_socket_asgi.pubsub.presence import MemoryPresence
from observable_socket_asgi.pubsub.topics import Topics, make_transport
from observable_socket_asgi.pubsub.transport import (
    Backplane,
    MemoryHistoryStore,
    Receiver,
    Transport,
)
from tests.fake_subscribers import FakeSubscriber


class Broker:
    """A stand-in message broker: topic -> the receivers listening to it."""

    def __init__(self) -> None:
        self.listening: dict[str, set[Receiver]] = {}


class DictTransport(Backplane):
    """A complete transport in five methods: nothing else is overridden."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.receiver: Receiver | None = None

    async def start(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def stop(self) -> None:
        self.receiver = None

    async def subscribe(self, topic: str) -> None:
        assert self.receiver is not None
        self.broker.listening.setdefault(topic, set()).add(self.receiver)

    def unsubscribe(self, topic: str) -> None:
        if self.receiver is not None:
            self.broker.listening.get(topic, set()).discard(self.receiver)

    async def publish(self, topic: str, frame: str) -> None:
        for receiver in self.broker.listening.get(topic, ()):
            if receiver is not self.receiver:
                receiver.deliver(topic, frame)


def test_the_interface_is_five_methods() -> None:
    """What a transport must implement; stores and `connected` have defaults."""
    assert Transport is Backplane
    assert Backplane.__abstractmethods__ == {
        "start",
        "stop",
        "subscribe",
        "unsubscribe",
        "publish",
    }
    with pytest.raises(TypeError):
        Backplane()  # type: ignore[abstract]


def test_default_stores_are_this_processs() -> None:
    """Without overrides a transport keeps history, presence and answers in memory."""
    transport = InMemoryBackplane()
    assert transport.history_store(HistoryOptions()) is None
    assert isinstance(transport.history_store(HistoryOptions(size=5)), MemoryHistoryStore)
    assert isinstance(transport.presence_store(PresenceOptions()), MemoryPresence)
    assert isinstance(transport.idempotency_store(IdempotencyOptions()), MemoryIdempotencyStore)
    assert transport.connected is True


async def test_a_push_crosses_a_fake_transport_between_two_hubs() -> None:
    """A publish on one hub reaches the other hub's subscribers, once each, and stops when
    the last subscriber there leaves."""
    broker = Broker()
    a, b = Topics(DictTransport(broker)), Topics(DictTransport(broker))
    here, there = FakeSubscriber(), FakeSubscriber()
    await a.subscribe(here, "news")
    await b.subscribe(there, "news")
    assert await a.publish("news", "hello") == 1
    assert [orjson.loads(f)["payload"] for f in here.frames] == ["hello"]
    assert [orjson.loads(f)["payload"] for f in there.frames] == ["hello"]
    there.close()
    assert broker.listening["news"] == {a}
    await a.publish("news", "again")
    assert len(there.frames) == 1 and len(here.frames) == 2
    await a.stop()
    await b.stop()


async def test_history_and_presence_work_over_a_fake_transport() -> None:
    """The hub's replay and presence need nothing more of the transport than its defaults."""
    hub = Topics(
        DictTransport(Broker()),
        history=HistoryOptions(size=10),
        presence=PresenceOptions(events=True),
    )
    first = FakeSubscriber()
    sub = await hub.subscribe(first, "t", presence={"name": "ada"})
    assert (sub.recovered, sub.offset) == (False, 0)
    for n in range(3):
        await hub.publish("t", n)
    # the epoch the first publish made (a subscribe makes no history), as its pushes carry it
    epoch = next(
        frame["headers"]["epoch"]
        for frame in map(orjson.loads, first.frames)
        if "epoch" in frame["headers"]
    )
    late = FakeSubscriber()
    resumed = await hub.subscribe(late, "t", {"offset": 1, "epoch": epoch})
    assert (resumed.recovered, resumed.offset) == (True, 3)
    assert [orjson.loads(f)["payload"] for f in late.frames] == [1, 2]
    assert await hub.members("t") == {first.member_id: {"name": "ada"}}
    first.close()
    await asyncio.sleep(0)
    assert await hub.members("t") == {}
    leave = orjson.loads(late.frames[-1])
    assert leave["headers"]["presence"] == "leave"
    assert leave["payload"] == {"member": first.member_id, "info": {"name": "ada"}}
    await hub.stop()


def test_make_transport_reads_the_routers_keyword() -> None:
    """None or "memory" is in process; an instance is kept; a Redis URL needs the extra."""
    transport = DictTransport(Broker())
    assert make_transport(transport) is transport
    assert isinstance(make_transport("memory://"), InMemoryBackplane)
    with pytest.raises(ValueError, match="nats://"):
        make_transport("nats://x")
