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
(`observable_socket_asgi.pubsub.redis_backplane`) overrides the `_remote_*` hooks.

Without history, delivery is at most once, in publish order per publisher. With history
(`history_size` > 0) every push carries its position (`headers.offset`, `headers.epoch`,
see `_history`), and `subscribe(..., since=position)` replays what the connection missed:

    The connection is registered as a subscriber first, with a buffer instead of a socket,
    and only then is the history read; so every push is either in what was read or in the
    buffer (or both: pushes at or below the offset read are dropped from the buffer). The
    replay is sent, then the buffer, and only then does the connection receive live, so
    nothing is duplicated and nothing is skipped. A connection that subscribes with
    `presence=info` is a member of the topic (`presence.py`) until it leaves it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, TypeAlias

from ..envelope import encode_push
from ..errors import ConnectionClosed
from ._history import MemoryHistory, Recovery, Subscription, parse_since, split_push
from ._idempotency import IdempotencyStore, MemoryIdempotencyStore
from .presence import NO_PRESENCE, MemoryPresence, Presence, check_info, member_id

if TYPE_CHECKING:
    from ..observe._observe import Observer
    from ..server.connection import Connection
    from ..types import Header, Payload
    from ._history import PushTemplate

__all__ = ["Backplane", "InMemoryBackplane"]

logger = logging.getLogger("observable_socket_asgi.topics")


class Backplane:
    """The local subscriber registry, and the base of every backplane.

    This base carries nothing between processes; subclasses override `_start`, `_stop`,
    `_remote_subscribe`, `_remote_unsubscribe` and `_remote_publish`. One that keeps the
    topics' history itself, so that every worker numbers pushes alike, also overrides
    `_shares_history`, `_publish_positioned` and `_history_since` (without them the history
    is this process's own); `_make_presence` and `idempotency_store` share presence and
    idempotent answers between workers.
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
        # the router's observer, told of connection state, drops and publish times
        self._observer: Observer | None = None
        # topic -> connections catching up on it -> live pushes held back meanwhile, as
        # (offset or None, frame): they are sent after the replay
        self._replaying: dict[str, dict[Connection, list[tuple[int | None, str]]]] = {}
        #: the topics' history in this process; None when `history_size` is 0
        self.history: MemoryHistory | None = None
        #: who is subscribed with presence info; the Redis backplane shares it across workers
        self.presence: Presence = MemoryPresence()
        #: publish a push on a member's join and leave
        self.presence_events = False
        # leave events published from sync close callbacks
        self._chores: set[asyncio.Task[Any]] = set()
        # deliveries not yet handed to every subscriber, oldest first: while any is here, a
        # new one queues behind it, so every subscriber gets pushes in delivery order
        self._backlog: deque[_Delivery] = deque()
        # the task handing the backlog out, slice by slice (see `deliver`)
        self._fanout: asyncio.Task[None] | None = None

    # Public API

    @property
    def connected(self) -> bool:
        """True while publishes reach every worker; always True in process."""
        return True

    @property
    def topics(self) -> frozenset[str]:
        """The topics that have at least one local subscriber."""
        return frozenset(self._subscribers)

    def topics_of(self, conn: Connection) -> AbstractSet[str]:
        """The topics `conn` is subscribed to here (read-only; do not keep it across awaits)."""
        return self._topics_of.get(conn, _NONE)

    def subscribers(self, topic: str) -> int:
        """How many local connections are subscribed to `topic`."""
        subs = self._subscribers.get(topic)
        return 0 if subs is None else len(subs)

    def observe(self, observer: Observer | None) -> None:
        """Report to `observer` from now on (the router calls this when metrics are on)."""
        self._observer = observer
        if observer is not None:
            observer.backplane_connected(self.connected)

    def configure(
        self,
        *,
        history_size: int = 0,
        history_ttl: float = 300.0,
        history_max_bytes: int = 1024 * 1024,
        history_max_topics: int = 10_000,
        presence_ttl: float = 15.0,
        presence_max_info_bytes: int = 4096,
        presence_events: bool = False,
    ) -> None:
        """Set up history and presence; the router calls it with its options.

        Raises:
            ValueError: an option out of range, naming it.
        """
        history = MemoryHistory(
            max(history_size, 1), history_ttl, history_max_bytes, max_topics=history_max_topics
        )
        self.history = history if history_size > 0 else None
        self.presence = self._make_presence(presence_ttl, presence_max_info_bytes)
        self.presence_events = bool(presence_events)

    def idempotency_store(self, max_entries: int, max_bytes: int) -> IdempotencyStore:
        """Where idempotent answers are kept: this process's memory (Redis: every worker's)."""
        return MemoryIdempotencyStore(max_entries, max_bytes)

    async def start(self) -> None:
        """Start carrying publishes (idempotent); the router's lifespan startup calls it."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await self._start()
                await self.presence.start()
                self._started = True

    async def stop(self) -> None:
        """Stop carrying publishes; the router's lifespan shutdown calls it."""
        fanout = self._fanout
        if fanout is not None:
            fanout.cancel()
            await asyncio.gather(fanout, return_exceptions=True)
            self._backlog.clear()
        if self._started:
            self._started = False
            if self._chores:
                await asyncio.gather(*self._chores, return_exceptions=True)
            await self.presence.stop()
            await self._stop()

    async def subscribe(
        self,
        conn: Connection,
        topic: str,
        since: Any = None,
        presence: Any = NO_PRESENCE,
    ) -> Subscription:
        """Subscribe `conn` to `topic`, replaying what it missed since `since`; idempotent.

        Returns:
            Whether the gap was recovered, and the topic's position (see `Subscription`).

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: `topic` is not a string; EncodeError: `presence` is not JSON.
            ValueError: `since` is not a position, or `presence` is too large.
        """
        if type(topic) is not str:
            raise TypeError(f"topic must be a string, got {type(topic).__name__}")
        position = parse_since(since)
        if presence is not NO_PRESENCE:
            check_info(presence, self.presence.max_info_bytes)
        if conn.closed:
            raise ConnectionClosed("cannot subscribe a closed connection")
        if not self._started:
            await self.start()
        mine = self._topics_of.get(conn)
        if mine is None:
            mine = self._topics_of[conn] = set()
            conn.on_close(lambda: self._forget(conn))
        if topic in mine:
            # already live: nothing to replay, only the position to tell
            recovery = await self._recovery(topic, position)
            result = Subscription(
                recovery is not None and recovery.recovered and not recovery.frames,
                None if recovery is None else recovery.offset,
                None if recovery is None else recovery.epoch,
            )
        else:
            mine.add(topic)
            subs = self._subscribers.get(topic)
            first = subs is None
            if subs is None:
                self._subscribers[topic] = {conn: None}
            else:
                subs[conn] = None
            if self.history is None and not self._shares_history():
                if first:
                    await self._remote_subscribe(topic)
                result = Subscription(False, None, None)
            else:
                result = await self._catch_up(conn, topic, position)
        if presence is not NO_PRESENCE and topic in self._topics_of.get(conn, ()):
            await self._join(conn, topic, presence)
            if topic not in self._topics_of.get(conn, ()):
                # it left (or closed) while joining: its leave may have run before the join
                # reached the store, so take it out again
                self.presence.leave(topic, member_id(conn))
                self._chore(self.presence.forget(topic, member_id(conn)))
        return result

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
        if self.history is not None or self._shares_history():
            template = split_push(topic, payload, headers)
            if not self._started:
                await self.start()
            return await self._publish_positioned(topic, template)
        return await self._publish_frame(topic, encode_push(topic, payload, headers))

    def deliver(self, topic: str, frame: str, offset: int | None = None) -> int:
        """Hand an encoded push to the local subscribers of `topic`; return how many.

        `offset` is the push's position when it has one: connections still catching up on
        the topic hold the push back until their replay is sent.

        The frame goes out in slices (`_SLICE_COUNT` subscribers, or `_SLICE_BYTES` of
        frames, whichever comes first): the first slice now, the rest from a task that lets
        the event loop run between slices, so one publish to many subscribers cannot stall
        every other connection. A delivery made while earlier ones are still being handed
        out waits behind them: each subscriber gets pushes in delivery order.
        """
        subs = self._subscribers.get(topic)
        if not subs:
            return 0
        delivery = _Delivery(topic, frame, offset, list(subs))
        backlog = self._backlog
        if not backlog:
            self._hand_out(delivery)
            if delivery.done < len(delivery.targets):
                backlog.append(delivery)
                self._fanout = asyncio.get_running_loop().create_task(self._fan_out())
        else:
            backlog.append(delivery)
        return len(delivery.targets)

    async def members(self, topic: str) -> dict[str, Any]:
        """The members of `topic` on every worker: `{member_id: info}`."""
        if not self._started:
            await self.start()
        return await self.presence.members(topic)

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

    # Hooks for backplanes that keep the history elsewhere

    def _shares_history(self) -> bool:
        """True when the history lives in the transport (then `history` is None here)."""
        return False

    async def _publish_positioned(self, topic: str, template: PushTemplate) -> int:
        """Number, keep and deliver a push (everywhere); return the local subscriber count."""
        assert self.history is not None
        now = asyncio.get_running_loop().time()
        offset, _, frame = self.history.append(topic, template, now)
        count = self.deliver(topic, frame, offset)
        await self._remote_publish(topic, frame)
        return count

    async def _history_since(self, topic: str, since: tuple[int, str] | None) -> Recovery:
        """The position of `topic`, and what a client at `since` missed."""
        assert self.history is not None
        return self.history.since(topic, since, asyncio.get_running_loop().time())

    def _make_presence(self, ttl: float, max_info_bytes: int) -> Presence:
        return MemoryPresence(ttl, max_info_bytes)

    # Private methods

    def _hand_out(self, delivery: _Delivery) -> None:
        """Hand `delivery` to its next slice of subscribers."""
        frame = delivery.frame
        per = max(1, min(_SLICE_COUNT, _SLICE_BYTES // max(1, len(frame))))
        start = delivery.done
        end = delivery.done = min(len(delivery.targets), start + per)
        sending = self._sending
        replaying = self._replaying.get(delivery.topic)
        # one message for all: servers only read it, and a dict per subscriber is measurable
        message = {"type": "websocket.send", "text": frame}
        for conn in delivery.targets[start:end]:
            if replaying is not None:
                held = replaying.get(conn)
                if held is not None:
                    held.append((delivery.offset, frame))
                    continue
            task = conn.push_nowait(message)
            if task is not None:
                sending.add(task)
                task.add_done_callback(sending.discard)

    async def _fan_out(self) -> None:
        """Hand the backlog out slice by slice, in order, yielding to the loop between slices.

        Nobody awaits this task: it cannot fail (a failed write only closes its connection), and it
        ends when the backlog is empty; `stop()` cancels it.
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
            self._fanout = None

    async def _publish_frame(self, topic: str, frame: str) -> int:
        if not self._started:
            await self.start()
        count = self.deliver(topic, frame)
        await self._remote_publish(topic, frame)
        return count

    async def _recovery(self, topic: str, since: tuple[int, str] | None) -> Recovery | None:
        if self.history is None and not self._shares_history():
            return None
        try:
            return await self._history_since(topic, since)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error("history of %r unreachable: subscribed without a position: %r", topic, exc)
            return None

    async def _catch_up(
        self, conn: Connection, topic: str, since: tuple[int, str] | None
    ) -> Subscription:
        """Read the position (and replay from `since`) of a connection just subscribed."""
        held: list[tuple[int | None, str]] = []
        self._replaying.setdefault(topic, {})[conn] = held
        try:
            # Every subscribe waits for the transport to be live on the topic (not only the
            # first): a position read before that could miss what is published meanwhile.
            await self._remote_subscribe(topic)
            recovery = await self._recovery(topic, since)
            if recovery is None:
                result = Subscription(False, None, None)
                top = -1
            else:
                result = Subscription(recovery.recovered, recovery.offset, recovery.epoch)
                top = recovery.offset if recovery.recovered else -1
                for frame in recovery.frames:
                    await conn.send_frame(frame)
            while held:
                offset, frame = held.pop(0)
                if offset is None or offset > top:
                    await conn.send_frame(frame)
            return result
        except ConnectionClosed:
            return Subscription(False, None, None)
        finally:
            replaying = self._replaying.get(topic)
            if replaying is not None:
                replaying.pop(conn, None)
                if not replaying:
                    del self._replaying[topic]

    async def _join(self, conn: Connection, topic: str, info: Any) -> None:
        member = member_id(conn)
        try:
            await self.presence.join(topic, member, info)
        except asyncio.CancelledError:
            raise
        except (TypeError, ValueError):
            raise
        except Exception as exc:
            # kept locally: the store is written again on its next renewal
            logger.error("presence of %r not stored yet: %r", topic, exc)
        if self.presence_events:
            await self._presence_event(topic, "join", member, info)

    async def _presence_event(self, topic: str, kind: str, member: str, info: Any) -> None:
        try:
            frame = encode_push(topic, {"member": member, "info": info}, {"presence": kind})
            await self._publish_frame(topic, frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("presence %s event on %r failed", kind, topic)

    def _leave(self, conn: Connection, topic: str) -> None:
        member = conn.scope.get("observable_socket.member")
        if member is None or not self.presence.has(topic, member):
            return
        info = self.presence.info(topic, member)
        self.presence.leave(topic, member)
        if self.presence_events:
            self._chore(self._presence_event(topic, "leave", member, info))

    def _chore(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` unawaited; `stop()` waits for it, and it logs its own failures."""
        task = asyncio.get_running_loop().create_task(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

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
        replaying = self._replaying.get(topic)
        if replaying is not None:
            replaying.pop(conn, None)
        self._leave(conn, topic)
        subs = self._subscribers.get(topic)
        if subs is None:
            return
        subs.pop(conn, None)
        if not subs:
            del self._subscribers[topic]
            self._remote_unsubscribe(topic)


# A publish hands its frame to at most this many subscribers, or this many bytes of frames
# (at least one subscriber), before it lets the event loop run other connections.
_SLICE_COUNT = 256
_SLICE_BYTES = 1024 * 1024

_NONE: frozenset[str] = frozenset()


class _Delivery:
    """One push on its way to the subscribers a delivery found: `done` of them have it."""

    __slots__ = ("done", "frame", "offset", "targets", "topic")

    def __init__(self, topic: str, frame: str, offset: int | None, targets: list[Any]) -> None:
        self.topic = topic
        self.frame = frame
        self.offset = offset
        self.targets = targets
        self.done = 0


class InMemoryBackplane(Backplane):
    """Topics within one process: the default, and all a single worker needs."""


# The server's runtime annotates its hub with this name until the hub lands.
Topics: TypeAlias = Any
