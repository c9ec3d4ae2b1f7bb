"""Topics: server push to groups of connections, and the in-process backplane.

Rules of a subscription (this module alone changes them):

    A connection subscribes to a topic with `ws.subscribe(topic)` and leaves it with
    `ws.unsubscribe(topic)`, or by disconnecting: the first subscription of a connection
    registers an `on_close` callback that removes every topic it holds, so no topic keeps
    a dead connection.

    `publish(topic, payload, headers)` encodes the push frame once (the route is the topic,
    the uuid a fresh server uuid) and hands that same string to every local subscriber's
    `send_frame_nowait`. A subscriber whose writer is busy queues it behind its own bound and
    meets the router's slow-consumer policy; a subscriber never delays the others, because
    each write runs at once in the publisher's task and only becomes a task if it has to
    wait for its socket.

A backplane carries publishes between processes. `InMemoryBackplane` (the default) is this
module's `Backplane` with nothing to carry: one process needs no broker. `RedisBackplane`
(`observable_socket_asgi.redis_backplane`) overrides the `_remote_*` hooks.

Delivery is at most once, in publish order per publisher: nothing is stored, retried or
acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .envelope import encode_push
from .errors import ConnectionClosed

if TYPE_CHECKING:
    from .connection import Connection
    from .types import Header, Payload

__all__ = ["Backplane", "InMemoryBackplane"]

logger = logging.getLogger("observable_socket_asgi.topics")


class Backplane:
    """The local subscriber registry, and the base of every backplane.

    This base carries nothing between processes; subclasses override `_start`, `_stop`,
    `_remote_subscribe`, `_remote_unsubscribe` and `_remote_publish`.
    """

    def __init__(self) -> None:
        # topic -> its local subscribers (a dict keeps subscription order for fan-out)
        self._subscribers: dict[str, dict[Connection, None]] = {}
        # connection -> its topics; a connection is here iff its on_close cleanup is registered
        self._topics_of: dict[Connection, set[str]] = {}
        # sends that suspended (a busy socket): kept referenced until they finish
        self._sending: set[asyncio.Task[None]] = set()
        self._started = False
        self._start_lock: asyncio.Lock | None = None

    # Public API

    @property
    def connected(self) -> bool:
        """True while publishes reach every worker; always True in process."""
        return True

    @property
    def topics(self) -> frozenset[str]:
        """The topics that have at least one local subscriber."""
        return frozenset(self._subscribers)

    def subscribers(self, topic: str) -> int:
        """How many local connections are subscribed to `topic`."""
        subs = self._subscribers.get(topic)
        return 0 if subs is None else len(subs)

    async def start(self) -> None:
        """Start carrying publishes (idempotent); the router's lifespan startup calls it."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await self._start()
                self._started = True

    async def stop(self) -> None:
        """Stop carrying publishes; the router's lifespan shutdown calls it."""
        if self._started:
            self._started = False
            await self._stop()

    async def subscribe(self, conn: Connection, topic: str) -> None:
        """Subscribe `conn` to `topic`; idempotent.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: `topic` is not a string.
        """
        if type(topic) is not str:
            raise TypeError(f"topic must be a string, got {type(topic).__name__}")
        if conn.closed:
            raise ConnectionClosed("cannot subscribe a closed connection")
        if not self._started:
            await self.start()
        mine = self._topics_of.get(conn)
        if mine is None:
            mine = self._topics_of[conn] = set()
            conn.on_close.append(lambda: self._forget(conn))
        if topic in mine:
            return
        mine.add(topic)
        subs = self._subscribers.get(topic)
        if subs is None:
            self._subscribers[topic] = {conn: None}
            await self._remote_subscribe(topic)
        else:
            subs[conn] = None

    async def unsubscribe(self, conn: Connection, topic: str) -> None:
        """Unsubscribe `conn` from `topic`; a topic it does not hold is ignored."""
        self._remove(conn, topic)

    async def publish(
        self, topic: str, payload: Payload = None, headers: Header | None = None
    ) -> int:
        """Send a push to every subscriber of `topic`, here and (through the backplane) elsewhere.

        Returns:
            How many local connections it was handed to.

        Raises:
            EncodeError: the payload or headers cannot be encoded as JSON.
        """
        frame = encode_push(topic, payload, headers)
        if not self._started:
            await self.start()
        count = self.deliver(topic, frame)
        await self._remote_publish(topic, frame)
        return count

    def deliver(self, topic: str, frame: str) -> int:
        """Hand an encoded push to the local subscribers of `topic`; return how many."""
        subs = self._subscribers.get(topic)
        if not subs:
            return 0
        sending = self._sending
        # one message for all: servers only read it, and a dict per subscriber is measurable
        message = {"type": "websocket.send", "text": frame}
        for conn in list(subs):
            task = conn._push_nowait(message)
            if task is not None:
                sending.add(task)
                task.add_done_callback(sending.discard)
        return len(subs)

    # Hooks for backplanes that reach other processes

    async def _start(self) -> None:
        pass

    async def _stop(self) -> None:
        pass

    async def _remote_subscribe(self, topic: str) -> None:
        """This worker gained its first subscriber of `topic`."""

    def _remote_unsubscribe(self, topic: str) -> None:
        """This worker lost its last subscriber of `topic` (sync: it runs from `on_close`)."""

    async def _remote_publish(self, topic: str, frame: str) -> None:
        """Carry `frame` to the other workers; local subscribers already have it."""

    # Private methods

    def _remove(self, conn: Connection, topic: str) -> None:
        mine = self._topics_of.get(conn)
        if mine is None or topic not in mine:
            return
        mine.discard(topic)
        self._drop_subscriber(conn, topic)

    def _forget(self, conn: Connection) -> None:
        """The connection closed: drop all its subscriptions."""
        for topic in self._topics_of.pop(conn, ()):
            self._drop_subscriber(conn, topic)

    def _drop_subscriber(self, conn: Connection, topic: str) -> None:
        subs = self._subscribers.get(topic)
        if subs is None:
            return
        subs.pop(conn, None)
        if not subs:
            del self._subscribers[topic]
            self._remote_unsubscribe(topic)


class InMemoryBackplane(Backplane):
    """Topics within one process: the default, and all a single worker needs."""
