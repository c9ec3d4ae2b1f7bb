"""The registry of subscriptions: topic -> subscribers, subscriber -> topics.

Rules of a subscription (this module alone changes them):

    A subscriber holds a topic from `add()` until `remove()`, or until it closes: its first
    topic registers one `on_close` callback that removes every topic it holds, so no topic
    keeps a dead connection. Each removal is reported to `on_leave(subscriber, topic)`, and
    a topic's last subscriber leaving to `on_empty(topic)` (both sync: they run from close
    callbacks).

    A topic's subscribers are kept in subscription order: the fan-out follows it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from .subscriber import Subscriber

__all__ = ["Registry"]

_NONE: frozenset[str] = frozenset()


class Registry:
    """Who is subscribed to what, in this process.

    Args:
        on_leave: told of every subscription that ends, before the registry forgets it.
        on_empty: told when a topic loses its last subscriber here.
    """

    def __init__(
        self,
        on_leave: Callable[[Subscriber, str], None],
        on_empty: Callable[[str], None],
    ) -> None:
        self._on_leave = on_leave
        self._on_empty = on_empty
        # topic -> its subscribers (a dict keeps subscription order for the fan-out)
        self._subscribers: dict[str, dict[Subscriber, None]] = {}
        # subscriber -> its topics; a subscriber is here iff its on_close cleanup is registered
        self._topics_of: dict[Subscriber, set[str]] = {}

    # Public API

    @property
    def topics(self) -> frozenset[str]:
        """The topics that have at least one subscriber here."""
        return frozenset(self._subscribers)

    def __len__(self) -> int:
        """How many subscribers hold at least one topic here."""
        return len(self._topics_of)

    def wanted(self, topic: str) -> bool:
        """True while `topic` has a subscriber here."""
        return topic in self._subscribers

    def topics_of(self, subscriber: Subscriber) -> AbstractSet[str]:
        """The topics `subscriber` holds (read-only; do not keep it across awaits)."""
        return self._topics_of.get(subscriber, _NONE)

    def holds(self, subscriber: Subscriber, topic: str) -> bool:
        """True while `subscriber` is subscribed to `topic`."""
        return topic in self._topics_of.get(subscriber, _NONE)

    def count(self, topic: str) -> int:
        """How many subscribers `topic` has here."""
        subscribers = self._subscribers.get(topic)
        return 0 if subscribers is None else len(subscribers)

    def targets(self, topic: str) -> list[Subscriber] | None:
        """A copy of the subscribers of `topic` in order, or None when it has none."""
        subscribers = self._subscribers.get(topic)
        return list(subscribers) if subscribers else None

    def add(self, subscriber: Subscriber, topic: str) -> bool | None:
        """Subscribe; return True if `topic` had no subscriber here, None if already held."""
        mine = self._topics_of.get(subscriber)
        if mine is None:
            mine = self._topics_of[subscriber] = set()
            subscriber.on_close(lambda: self._forget(subscriber))
        if topic in mine:
            return None
        mine.add(topic)
        subscribers = self._subscribers.get(topic)
        if subscribers is None:
            self._subscribers[topic] = {subscriber: None}
            return True
        subscribers[subscriber] = None
        return False

    def remove(self, subscriber: Subscriber, topic: str) -> None:
        """Unsubscribe; a topic the subscriber does not hold is ignored."""
        mine = self._topics_of.get(subscriber)
        if mine is None or topic not in mine:
            return
        mine.discard(topic)
        self._drop(subscriber, topic)

    # Private methods

    def _forget(self, subscriber: Subscriber) -> None:
        """The subscriber closed: drop all its subscriptions."""
        for topic in self._topics_of.pop(subscriber, ()):
            self._drop(subscriber, topic)

    def _drop(self, subscriber: Subscriber, topic: str) -> None:
        self._on_leave(subscriber, topic)
        subscribers = self._subscribers.get(topic)
        if subscribers is None:
            return
        subscribers.pop(subscriber, None)
        if not subscribers:
            del self._subscribers[topic]
            self._on_empty(topic)
