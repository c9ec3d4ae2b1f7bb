"""The subscription registry, with stand-in subscribers: who holds what, and cleanup."""

from __future__ import annotations

from observable_socket_asgi.pubsub.registry import Registry
from observable_socket_asgi.pubsub.subscriber import Subscriber
from tests.fake_subscribers import FakeSubscriber


def recording() -> tuple[Registry, list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []

    def left(sub: Subscriber, topic: str) -> None:
        events.append(("leave", topic))

    registry = Registry(left, lambda topic: events.append(("empty", topic)))
    return registry, events


def test_add_says_first_then_held_and_keeps_order() -> None:
    """The first subscriber of a topic is told apart; a second add of the same is None."""
    registry, _ = recording()
    a, b = FakeSubscriber(), FakeSubscriber()
    assert registry.add(a, "t") is True
    assert registry.add(b, "t") is False
    assert registry.add(a, "t") is None
    assert registry.targets("t") == [a, b]
    assert registry.count("t") == 2 and registry.topics == {"t"} and len(registry) == 2
    assert registry.targets("none") is None


def test_remove_reports_the_leave_and_the_last_one() -> None:
    """Removing tells `on_leave` each time and `on_empty` when nobody is left."""
    registry, events = recording()
    a, b = FakeSubscriber(), FakeSubscriber()
    registry.add(a, "t")
    registry.add(b, "t")
    registry.remove(a, "t")
    registry.remove(a, "t")  # not held any more: ignored
    assert events == [("leave", "t")]
    registry.remove(b, "t")
    assert events == [("leave", "t"), ("leave", "t"), ("empty", "t")]
    assert not registry.wanted("t")


def test_a_closed_subscriber_leaves_every_topic_once() -> None:
    """Close callbacks drop every topic of the subscriber; one callback per subscriber."""
    registry, events = recording()
    a, b = FakeSubscriber(), FakeSubscriber()
    for topic in ("x", "y"):
        registry.add(a, topic)
    registry.add(b, "x")
    assert len(a.closers) == 1
    a.close()
    assert sorted(events) == [("empty", "y"), ("leave", "x"), ("leave", "y")]
    assert registry.topics_of(a) == frozenset() and registry.targets("x") == [b]
    assert len(registry) == 1
