"""Topics: the hub the server holds, composed from a transport and the history and presence
options; and `make_transport`, which reads the router's `backplane=` keyword.

Rules of a subscription are the registry's (`registry.py`), of a delivery the fan-out's
(`fanout.py`), of a catch-up the replay's (`replay.py`); this module only puts them in order:

    `publish(topic, payload, headers)` encodes the push frame once (the route is the topic,
    the uuid a fresh server uuid), delivers it to this worker's subscribers, then has the
    transport carry it to the other workers. Without history, delivery is at most once, in
    publish order per publisher. With history (`HistoryOptions.size` > 0) the transport's
    history store numbers the push first (`headers.offset`, `headers.epoch`, see
    `_history`), and `subscribe(..., since=position)` replays what the subscriber missed
    before it goes live. A subscriber that subscribes with `presence=info` is a member of the
    topic (`presence.py`) until it leaves it; with `PresenceOptions.events` its join and
    leave are published to the topic as pushes.

The hub is built complete (`Topics(transport, history=..., presence=...)`), and starts its
transport on first use or from the router's lifespan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, cast

from ..envelope import encode_push
from ..errors import ConnectionClosed
from ..options import HistoryOptions, IdempotencyOptions, PresenceOptions
from ._control import Closable, check_close, close_each
from ._history import Recovery, Subscription, parse_since, split_push
from ._idempotency import IdempotencyStore
from .fanout import SlicedFanout
from .memory import InMemoryBackplane
from .presence import NO_PRESENCE, Presence, check_info
from .registry import Registry
from .replay import Replays
from .subscriber import Subscriber
from .transport import Backplane, HistoryStore

if TYPE_CHECKING:
    from ..observe._observe import Observer
    from ..types import Header, Payload

__all__ = ["Topics", "make_transport"]

logger = logging.getLogger("observable_socket_asgi.topics")

_NO_POSITION = Subscription(False, None, None)


# the URLs the Redis transport takes: one server, a Sentinel-watched master, a Cluster
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


def make_transport(spec: Backplane | str | None) -> Backplane:
    """Build the transport a router was given: None (in memory), a URL, or an instance.

    Raises:
        ValueError: a URL of an unknown scheme.
        TypeError: neither None, a string nor a `Backplane`.
    """
    if spec is None:
        return InMemoryBackplane()
    if isinstance(spec, Backplane):
        return spec
    if isinstance(spec, str):
        if spec == "memory" or spec == "memory://":
            return InMemoryBackplane()
        if spec.startswith(_REDIS_SCHEMES):
            # imported on use: the Redis client is needed only by routers given a Redis URL
            from .redis_backplane import RedisBackplane

            return RedisBackplane(spec)
        raise ValueError(f"backplane must be 'memory', a redis:// URL or a Backplane, got {spec!r}")
    raise TypeError(f"backplane must be a Backplane, a URL or None, got {type(spec).__name__}")


class Topics:
    """The topics of one server: subscriptions, fan-out, replay and presence on a transport.

    Args:
        transport: what carries publishes to other workers (`make_transport(spec)` reads
            the router's keyword); None: this process only.
        history: pushes kept per topic for resume; the transport keeps them.
        presence: members of topics; the transport keeps them.
    """

    def __init__(
        self,
        transport: Backplane | None = None,
        *,
        history: HistoryOptions | None = None,
        presence: PresenceOptions | None = None,
    ) -> None:
        history = HistoryOptions() if history is None else history
        presence = PresenceOptions() if presence is None else presence
        #: what carries publishes between workers
        self.transport: Backplane = InMemoryBackplane() if transport is None else transport
        #: where pushes are numbered and kept; None when `history.size` is 0
        self.history: HistoryStore | None = self.transport.history_store(history)
        #: who is subscribed with presence info (shared by the transport's store)
        self.presence: Presence = self.transport.presence_store(presence)
        #: publish a push on a member's join and leave
        self.presence_events = presence.events
        #: who hears of the transport's state, drops and publish times; None: nobody
        self.observer: Observer | None = None
        self._replays = Replays()
        self._fanout = SlicedFanout(self._replays.holding)
        self._registry = Registry(self._left, self.transport.unsubscribe)
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        # leave events and presence cleanups started from sync close callbacks
        self._chores: set[asyncio.Task[Any]] = set()

    # Public API: state

    @property
    def connected(self) -> bool:
        """True while publishes reach every worker; always True in process."""
        return self.transport.connected

    @property
    def topics(self) -> frozenset[str]:
        """The topics that have at least one subscriber here."""
        return self._registry.topics

    @property
    def holders(self) -> int:
        """How many subscribers hold at least one topic here (a closed one never does)."""
        return len(self._registry)

    def wanted(self, topic: str) -> bool:
        """True while `topic` has a subscriber here (the transport asks before subscribing)."""
        return self._registry.wanted(topic)

    def topics_of(self, subscriber: Subscriber) -> AbstractSet[str]:
        """The topics `subscriber` holds here (read-only; do not keep it across awaits)."""
        return self._registry.topics_of(subscriber)

    def subscribers(self, topic: str) -> int:
        """How many subscribers `topic` has here."""
        return self._registry.count(topic)

    def observe(self, observer: Observer | None) -> None:
        """Report to `observer` from now on (the router calls this when metrics are on)."""
        self.observer = observer
        if observer is not None:
            observer.backplane_connected(self.connected)

    def idempotency_store(self, options: IdempotencyOptions) -> IdempotencyStore:
        """Where idempotent answers are kept: the transport's store."""
        return self.transport.idempotency_store(options)

    # Public API: lifecycle

    async def start(self) -> None:
        """Start the transport and presence (idempotent); the lifespan or first use calls it."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await self.transport.start(self)
                await self.presence.start()
                self._started = True

    async def stop(self) -> None:
        """Stop handing pushes out, then presence and the transport; the lifespan calls it."""
        await self._fanout.stop()
        if self._started:
            self._started = False
            if self._chores:
                await asyncio.gather(*self._chores, return_exceptions=True)
            await self.presence.stop()
            await self.transport.stop()

    # Public API: subscriptions and pushes

    async def subscribe(
        self,
        subscriber: Subscriber,
        topic: str,
        since: Any = None,
        presence: Any = NO_PRESENCE,
    ) -> Subscription:
        """Subscribe to `topic`, replaying what was missed since `since`; idempotent.

        Returns:
            Whether the gap was recovered, and the topic's position (see `Subscription`).

        Raises:
            ConnectionClosed: the subscriber is closing or closed.
            TypeError: `topic` is not a string; EncodeError: `presence` is not JSON.
            ValueError: `since` is not a position, or `presence` is too large.
        """
        if type(topic) is not str:
            raise TypeError(f"topic must be a string, got {type(topic).__name__}")
        position = parse_since(since)
        if presence is not NO_PRESENCE:
            check_info(presence, self.presence.max_info_bytes)
        if subscriber.closed:
            raise ConnectionClosed("cannot subscribe a closed connection")
        if not self._started:
            await self.start()
        added = self._registry.add(subscriber, topic)
        if added is None:
            # already live: nothing to replay, only the position to tell
            result = _held_position(await self._recovery(topic, position))
        elif self.history is None:
            if added:
                await self.transport.subscribe(topic)
            result = _NO_POSITION
        else:
            result = await self._replays.catch_up(
                subscriber, topic, lambda: self._go_live(topic, position)
            )
        if presence is not NO_PRESENCE and self._registry.holds(subscriber, topic):
            await self._join(subscriber, topic, presence)
        return result

    async def unsubscribe(self, subscriber: Subscriber, topic: str) -> None:
        """Unsubscribe from `topic`; a topic not held is ignored."""
        self._registry.remove(subscriber, topic)

    async def publish(
        self, topic: str, payload: Payload = None, headers: Header | None = None
    ) -> int:
        """Send a push to every subscriber of `topic`, here and (through the transport) elsewhere.

        Returns:
            How many subscribers here it was handed to.

        Raises:
            EncodeError: the payload or headers cannot be encoded as JSON.
        """
        history = self.history
        if history is None:
            return await self._publish_frame(topic, encode_push(topic, payload, headers))
        template = split_push(topic, payload, headers)
        if not self._started:
            await self.start()
        appended = await history.append(topic, template)
        if appended.frame is None:
            # the transport delivers it here too, in the order the store numbered it
            return self._registry.count(topic)
        count = self.deliver(topic, appended.frame, appended.offset)
        if appended.carry:
            await self.transport.publish(topic, appended.frame)
        return count

    def deliver(self, topic: str, frame: str, offset: int | None = None) -> int:
        """Hand an encoded push to the subscribers of `topic` here; return how many.

        `offset` is the push's position when it has one: subscribers still catching up on
        the topic hold it back until their replay is sent (see `fanout.SlicedFanout`).
        """
        targets = self._registry.targets(topic)
        if targets is None:
            return 0
        self._fanout.deliver(topic, frame, offset, targets)
        return len(targets)

    async def close_subscribers(self, topic: str, code: int = 1000, reason: str = "") -> int:
        """Close every connection subscribed to `topic`, here and on every worker.

        The other workers close theirs after every push this worker published on `topic`
        before (the close travels behind them); here they close at once.

        Returns:
            How many subscribers here are being closed.

        Raises:
            ValueError: a code a server may not send, or a reason over 123 bytes in UTF-8.
        """
        check_close(code, reason)
        if not self._started:
            await self.start()
        count = self.close_local(topic, code, reason)
        await self.transport.close_subscribers(topic, code, reason)
        return count

    def close_local(self, topic: str, code: int, reason: str) -> int:
        """Close this worker's subscribers of `topic`; return how many (the transport calls
        this for a close from another worker). The closes run in a task `stop()` waits for."""
        targets = self._registry.targets(topic)
        if not targets:
            return 0
        self._chore(_closing(targets, code, reason))
        return len(targets)

    async def members(self, topic: str) -> dict[str, Any]:
        """The members of `topic` on every worker: `{member_id: info}`."""
        if not self._started:
            await self.start()
        return await self.presence.members(topic)

    # Private methods

    async def _publish_frame(self, topic: str, frame: str) -> int:
        if not self._started:
            await self.start()
        count = self.deliver(topic, frame)
        await self.transport.publish(topic, frame)
        return count

    async def _go_live(self, topic: str, since: tuple[int, str] | None) -> Recovery | None:
        # Every subscribe waits for the transport to be live on the topic (not only the
        # first): a position read before that could miss what is published meanwhile.
        await self.transport.subscribe(topic)
        return await self._recovery(topic, since)

    async def _recovery(self, topic: str, since: tuple[int, str] | None) -> Recovery | None:
        if self.history is None:
            return None
        try:
            return await self.history.since(topic, since)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error("history of %r unreachable: subscribed without a position: %r", topic, exc)
            return None

    async def _join(self, subscriber: Subscriber, topic: str, info: Any) -> None:
        member = subscriber.member_id
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
        if not self._registry.holds(subscriber, topic):
            # it left (or closed) while joining: its leave may have run before the join
            # reached the store, so take it out again
            self.presence.leave(topic, member)
            self._chore(self.presence.forget(topic, member))

    async def _presence_event(self, topic: str, kind: str, member: str, info: Any) -> None:
        try:
            frame = encode_push(topic, {"member": member, "info": info}, {"presence": kind})
            await self._publish_frame(topic, frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("presence %s event on %r failed", kind, topic)

    def _left(self, subscriber: Subscriber, topic: str) -> None:
        """A subscription ended (the registry tells): stop its replay, and its membership."""
        self._replays.drop(subscriber, topic)
        member = subscriber.member_id
        if not self.presence.has(topic, member):
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


async def _closing(targets: list[Subscriber], code: int, reason: str) -> None:
    """Close `targets`; each failure is logged by `close_each`.

    The `Subscriber` protocol leaves `close` out (the fan-out and the replay never close);
    the server's connection has it, with the WebSocket close code and reason.
    """
    await close_each(cast("list[Closable]", targets), code, reason)


def _held_position(recovery: Recovery | None) -> Subscription:
    """The answer to a subscribe of a topic already held: only its position."""
    if recovery is None:
        return _NO_POSITION
    return Subscription(recovery.recovered and not recovery.frames, recovery.offset, recovery.epoch)
