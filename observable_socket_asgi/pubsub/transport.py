"""The transport interface: what carries publishes between processes, and keeps their stores.

A transport (`Backplane`; `Transport` is the same class) is five methods: `start(receiver)`,
`stop()`, `subscribe(topic)`, `unsubscribe(topic)` and `publish(topic, frame)`, plus the
stores it shares between workers: `history_store()`, `presence_store()` and
`idempotency_store()`, which default to this process's memory. Everything else (the
registry, the fan-out, the replay, presence events) is the `Topics` hub's, built on top of
any transport, so adding one (Redis, NATS, Postgres LISTEN/NOTIFY) means writing only this.

Rules of a transport (python-socketio's pub/sub managers split the same way):

    The hub calls `start(receiver)` once before anything else, and hands the transport the
    `Receiver` to deliver to: what arrives from other workers goes to
    `receiver.deliver(topic, frame, offset)`. `subscribe(topic)` is called when this worker
    needs a topic (awaited: once it returns, publishes elsewhere reach this worker), and
    `unsubscribe(topic)` when it no longer does (sync: it runs from close callbacks).
    `publish(topic, frame)` carries a push the hub has already delivered here to the others;
    it never raises (a push that cannot be carried is counted and logged by the transport).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..options import HistoryOptions, IdempotencyOptions, PresenceOptions
from ._history import MemoryHistory, PushTemplate, Recovery
from ._idempotency import IdempotencyStore, MemoryIdempotencyStore
from .presence import MemoryPresence, Presence

if TYPE_CHECKING:
    from ..observe._observe import Observer

__all__ = [
    "Appended",
    "Backplane",
    "HistoryStore",
    "MemoryHistoryStore",
    "Receiver",
    "Transport",
]


class Receiver(Protocol):
    """What a transport delivers to: the `Topics` hub."""

    @property
    def observer(self) -> Observer | None:
        """Who to tell of connection state, drops and publish times; None: nobody."""
        ...

    @property
    def topics(self) -> frozenset[str]:
        """The topics this worker needs (a transport subscribes them again on reconnect)."""
        ...

    def wanted(self, topic: str) -> bool:
        """True while this worker needs `topic`."""
        ...

    def deliver(self, topic: str, frame: str, offset: int | None = None) -> int:
        """Hand a push that arrived to this worker's subscribers of `topic`; return how many."""
        ...

    def close_local(self, topic: str, code: int, reason: str) -> int:
        """Close this worker's subscribers of `topic` (a close that arrived); return how many."""
        ...


@dataclass(frozen=True, slots=True)
class Appended:
    """A push numbered by a history store, and what the hub still has to do with it.

    Attributes:
        frame: the frame to deliver here now; None when the transport delivers it (to every
            worker, this one included, in the order the store numbered them).
        offset: its position, or None when it has none (the history was unreachable).
        carry: True when the hub must still `publish()` the frame to the other workers.
    """

    frame: str | None
    offset: int | None
    carry: bool


class HistoryStore(ABC):
    """Where the pushes of topics with history are numbered and kept."""

    @abstractmethod
    async def append(self, topic: str, template: PushTemplate) -> Appended:
        """Number and keep a push; say who delivers it (see `Appended`)."""

    @abstractmethod
    async def since(self, topic: str, since: tuple[int, str] | None) -> Recovery:
        """The position of `topic`, and what a client at `since` missed.

        Raises:
            Exception: the store is unreachable (the hub subscribes without a position).
        """


class MemoryHistoryStore(HistoryStore):
    """This process's history: each worker numbers its own pushes."""

    def __init__(self, options: HistoryOptions) -> None:
        #: the pure log, read with the event loop's clock
        self.memory = MemoryHistory(
            options.size, options.ttl, options.max_bytes, max_topics=options.max_topics
        )

    async def append(self, topic: str, template: PushTemplate) -> Appended:
        now = asyncio.get_running_loop().time()
        offset, _, frame = self.memory.append(topic, template, now)
        return Appended(frame, offset, carry=True)

    async def since(self, topic: str, since: tuple[int, str] | None) -> Recovery:
        return self.memory.since(topic, since, asyncio.get_running_loop().time())


class Backplane(ABC):
    """The transport interface: carries publishes to the other workers, and shares stores.

    Subclass it and implement the five abstract methods; override the store methods to
    share history, presence and idempotent answers between workers (by default each worker
    keeps its own). Pass an instance as `SocketRouter(backplane=...)`.
    """

    @property
    def connected(self) -> bool:
        """True while publishes reach every worker."""
        return True

    @abstractmethod
    async def start(self, receiver: Receiver) -> None:
        """Start carrying publishes, delivering what arrives to `receiver`; called once."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop carrying publishes and release connections."""

    @abstractmethod
    async def subscribe(self, topic: str) -> None:
        """This worker gained its first subscriber of `topic`: receive its publishes."""

    @abstractmethod
    def unsubscribe(self, topic: str) -> None:
        """This worker lost its last subscriber of `topic` (sync: runs from close callbacks)."""

    @abstractmethod
    async def publish(self, topic: str, frame: str) -> None:
        """Carry `frame` to the other workers; this worker's subscribers already have it."""

    async def close_subscribers(self, topic: str, code: int, reason: str) -> None:  # noqa: B027 (optional)
        """Carry a close of `topic`'s subscribers to the other workers, in order with this
        worker's publishes (this worker's own are closed already); none to carry here."""

    def history_store(self, options: HistoryOptions) -> HistoryStore | None:
        """Where pushes are numbered and kept; None when `options` keep no history."""
        return MemoryHistoryStore(options) if options.enabled else None

    def presence_store(self, options: PresenceOptions) -> Presence:
        """Who is subscribed with presence info."""
        return MemoryPresence(options.ttl, options.max_info_bytes)

    def idempotency_store(self, options: IdempotencyOptions) -> IdempotencyStore:
        """Where the answers of idempotent routes are kept for retries."""
        return MemoryIdempotencyStore(options.max_entries, options.max_bytes)


#: The transport interface under its descriptive name: `Backplane` is what users see.
Transport = Backplane
