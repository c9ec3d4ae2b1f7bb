"""The Redis backplane: topics across workers and hosts through Redis pub/sub.

Install with `pip install "observable-socket-asgi[redis]"` (redis-py's asyncio API);
without it, importing this module raises an `ImportError` that names the extra.

Rules of the listener (this module alone changes them):

    One pub/sub connection per worker, owned by one listener task. It subscribes to the
    channel of every topic that has a local subscriber (`prefix + topic`), plus a control
    channel of its own so that it is always subscribed. When the connection fails (Redis
    restarted, network cut, no answer to PING within `2 * ping_interval`), `connected`
    turns False and the listener reconnects after a jittered exponential backoff
    (`_backoff.py`, the client's) that starts over after a success; on reconnect it
    subscribes every topic this worker needs again.

    An outage is logged once when it starts (with the Redis address, never its password),
    then summarised every `log_interval` seconds (attempts, publishes dropped), and once
    more when it ends (`_outage.OutageReport`); never a line per attempt or per publish.

    Pub/sub commands are sent under one lock, and each re-reads the wanted set right before
    it is sent, so a subscribe racing an unsubscribe of the same topic always ends in the
    state the worker wants.

    `url` names one server (`redis://`, `rediss://`, `unix://`), a master found through
    Sentinel (`redis+sentinel://`: after a failover the reconnect asks the sentinels for
    the new master), or a Cluster (`redis+cluster://`, Redis 7+: every channel is a shard
    channel heard from its slot's node, see `_listening`; topics are hash tags, `_wire`).

    A publish delivers to this worker's subscribers at once, then sends one PUBLISH whose
    body is this worker's id followed by the already encoded frame; the listener skips its
    own worker's messages. Every PUBLISH and history script of the worker goes through one
    ordered, pipelined writer (`_ordered`), queued when `publish()` is called: a topic's
    pushes reach every worker in the order this worker published them, concurrent
    publishes included. A close message (`_control`) travels the same way and closes the
    topic's subscribers on the workers that hear it.

    While `connected` is False the PUBLISH is not attempted: the push reaches the
    publishing worker's subscribers only, is counted in `dropped`, and is never replayed
    (at-most-once delivery).

    With history (`history_size` > 0) a publish is one Lua script that numbers the push,
    keeps it in the topic's stream and PUBLISHes it with its offset after the worker id
    (`_redis_stores`). Every worker, the publishing one included, delivers it from the
    listener, so all of them deliver a topic's pushes in offset order. While Redis is down
    such a push reaches the publishing worker's subscribers without a position, is counted
    in `dropped`, and is not in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from .._backoff import backoff
from .._concurrency import raise_lost_cancel
from ..options import HistoryOptions, IdempotencyOptions, PresenceOptions
from ._control import close_body, parse_close
from ._history import PushTemplate, Recovery, unnumbered
from ._idempotency import IdempotencyStore
from ._listening import Listening
from ._ordered import OrderedWriter
from ._outage import OutageReport, Summary, redact_url
from ._redis_urls import aclose_client, async_client, parse
from ._wire import ORIGIN_LEN, channel, new_origin
from .presence import Presence
from .transport import Appended, Backplane, HistoryStore, Receiver

if TYPE_CHECKING:
    from ..observe._observe import Observer

try:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from ._redis_stores import RedisHistory, RedisIdempotencyStore, RedisPresence
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    from .._extras import install_command

    raise ImportError(
        f"the Redis backplane needs redis-py; install the extra: {install_command('redis')}"
    ) from exc

__all__ = ["RedisBackplane"]

logger = logging.getLogger("observable_socket_asgi.redis")

# A worker id is this many hex characters, at the start of every PUBLISH body.
_ORIGIN_LEN = ORIGIN_LEN
# The ceiling of the first reconnect delay, in seconds; it doubles up to max_backoff.
_FIRST_DELAY = 0.1


class RedisBackplane(Backplane):
    """A transport: publishes reach the subscribers of every worker sharing the Redis server.

    History, presence and idempotent answers are kept in Redis too, shared by the workers.

    Args:
        url: a redis-py URL, e.g. `"redis://127.0.0.1:6379/0"`.
        prefix: channel name prefix; workers must share it to see each other's pushes.
        ping_interval: seconds of silence on the listener connection before a PING; no
            answer within twice this and the connection is treated as dead.
        max_backoff: the longest wait between reconnect attempts, in seconds.
        publish_timeout: seconds a PUBLISH may take before the push counts as dropped.
        connect_timeout: seconds to open a connection to Redis.
        log_interval: seconds between two log lines summarising an outage.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "observable_socket:",
        ping_interval: float = 5.0,
        max_backoff: float = 5.0,
        publish_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        log_interval: float = 60.0,
    ) -> None:
        self.url = url
        #: where Redis is: one server, a Sentinel-watched master or a Cluster
        self.target = parse(url)
        if self.target.cluster and ("{" in prefix or "}" in prefix):
            raise ValueError(f"on a Redis Cluster the prefix cannot hold braces, got {prefix!r}")
        self.prefix = prefix
        self.ping_interval = ping_interval
        self.max_backoff = max_backoff
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        #: where Redis is, for logs: the URL without its password
        self.address = redact_url(url)
        # when to log during an outage: once at its start, then a summary per log_interval
        self._outage = OutageReport(log_interval)
        #: publishes that did not reach Redis (listener down, error or timeout)
        self.dropped = 0
        #: successful (re)connections of the listener; 1 after the first
        self.connects = 0
        self._origin = new_origin()
        self._control = f"{prefix}\x00worker:{self._origin.decode()}".encode()
        self._redis: Any = None
        # every PUBLISH and history script of this worker, in call order, pipelined; its
        # client is set by start()
        self._writer = OrderedWriter(None, publish_timeout)
        # the hub: where what the listener hears is delivered, and which topics are wanted
        self._receiver: Receiver | None = None
        self._pubsub: Any = None
        self._connected = False
        # set while connected; start() waits on it briefly so a worker starts up connected
        self._up: asyncio.Event | None = None
        self._listener: asyncio.Task[None] | None = None
        # serialises pub/sub commands on the one listener connection
        self._lock: asyncio.Lock | None = None
        # channel -> futures waiting for Redis to confirm a SUBSCRIBE
        self._confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        # pub/sub commands started from sync code (close callbacks, the listener)
        self._unsubscribing: set[asyncio.Task[Any]] = set()

    # Public API

    @property
    def connected(self) -> bool:
        """True while the listener holds a live, subscribed connection to Redis."""
        return self._connected

    # The transport interface

    async def start(self, receiver: Receiver) -> None:
        self._receiver = receiver
        # TCP keepalive notices a peer gone without a word; redis-py refuses the option on a
        # unix:// URL (no TCP there, and the peer is on this machine).
        keepalive: dict[str, Any] = (
            {} if self.url.startswith("unix://") else {"socket_keepalive": True}
        )
        # The listener owns reconnection (with backoff and resubscription), so redis-py
        # must report a failure at once instead of retrying behind its back (a cluster
        # client follows MOVED replies itself).
        retry = {} if self.target.cluster else {"retry": Retry(NoBackoff(), 0)}
        self._redis = async_client(
            self.target, socket_connect_timeout=self.connect_timeout, **retry, **keepalive
        )
        self._writer.client = self._redis
        self._up = asyncio.Event()
        self._lock = asyncio.Lock()
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(), name="observable-socket redis listener"
        )
        # Start connected when Redis is there; when it is not, serve anyway (the listener
        # keeps trying and logs every attempt).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.connect_timeout):
                await self._up.wait()

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        for chore in list(self._unsubscribing):
            chore.cancel()
        if self._unsubscribing:
            await asyncio.gather(*self._unsubscribing, return_exceptions=True)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await aclose_client(self._redis)
            self._redis = None

    async def subscribe(self, topic: str) -> None:
        """Subscribe the worker to `topic`; return once Redis confirms (or soon after)."""
        channel = self._channel(topic)
        waiter = await self._command(topic, subscribe=True)
        if waiter is None:
            return
        try:
            async with asyncio.timeout(self.publish_timeout):
                await waiter
        except TimeoutError:
            logger.warning("Redis did not confirm SUBSCRIBE %r in time", channel)
        finally:
            waiters = self._confirming.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)

    def unsubscribe(self, topic: str) -> None:
        if self._lock is None:
            return
        self._chore(self._unsubscribe(topic))

    async def publish(self, topic: str, frame: str) -> None:
        observer = self._observer()
        started = time.perf_counter() if observer is not None else 0.0
        if await self._send(topic, self._origin + frame.encode()) and observer is not None:
            observer.backplane_published(time.perf_counter() - started)

    async def close_subscribers(self, topic: str, code: int, reason: str) -> None:
        """Close every subscriber of `topic` on the other workers (`_control`'s message)."""
        await self._send(topic, close_body(self._origin, code, reason))

    async def _send(self, topic: str, body: bytes) -> bool:
        """PUBLISH `body` on `topic`'s channel; False when it was dropped (and counted)."""
        if not self._connected or self._redis is None:
            self._dropped_publish(topic, None)
            return False
        try:
            # queued now, behind every earlier publish of this worker: in call order
            await self._writer.send(self._verb, self._channel(topic), body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._dropped_publish(topic, exc)
            return False
        return True

    # Private methods: telling an outage

    def _observer(self) -> Observer | None:
        return None if self._receiver is None else self._receiver.observer

    def _dropped_publish(self, topic: str, exc: BaseException | None) -> None:
        self.dropped += 1
        observer = self._observer()
        if observer is not None:
            observer.backplane_dropped()
        now = asyncio.get_running_loop().time()
        if self._outage.dropped(now):
            logger.warning(
                "Redis backplane at %s is unreachable (%s): publishes reach this worker's "
                "subscribers only; dropped publishes are summarised every %g s",
                self.address,
                "listener down" if exc is None else repr(exc),
                self._outage.interval,
            )
            return
        self._log_summary(now)

    def _log_summary(self, now: float) -> None:
        report = self._outage.summary(now)
        if report is not None:
            logger.warning(
                "Redis backplane at %s still down after %.1f s: %d failed attempt(s) and "
                "%d publish(es) that reached this worker only, in the last %g s",
                self.address,
                report.lasted,
                report.attempts,
                report.dropped,
                self._outage.interval,
            )

    def _log_recovered(self, report: Summary | None, topics: int) -> None:
        if report is not None:
            logger.warning(
                "Redis backplane at %s reconnected after %.1f s; resubscribed %d topic(s); "
                "%d publish(es) since the last report reached this worker only",
                self.address,
                report.lasted,
                topics,
                report.dropped,
            )

    # History, presence and idempotent answers, in Redis

    def history_store(self, options: HistoryOptions) -> HistoryStore | None:
        """The topics' history in Redis streams, numbered alike by every worker."""
        if not options.enabled:
            return None
        shared = RedisHistory(
            self._client,
            self.prefix,
            options.size,
            options.ttl,
            cluster=self.target.cluster,
            writer=self._writer,
        )
        return _SharedHistory(
            lambda topic, template: self._append(shared, topic, template),
            lambda topic, since: self._since(shared, topic, since),
        )

    def presence_store(self, options: PresenceOptions) -> Presence:
        return RedisPresence(
            self._client,
            self.prefix,
            options.ttl,
            options.max_info_bytes,
            cluster=self.target.cluster,
        )

    def idempotency_store(self, options: IdempotencyOptions) -> IdempotencyStore:
        return RedisIdempotencyStore(self._client, self.prefix, options.max_bytes)

    async def _append(self, history: RedisHistory, topic: str, template: PushTemplate) -> Appended:
        if self._connected and self._redis is not None:
            try:
                async with asyncio.timeout(self.publish_timeout):
                    await history.publish(topic, template, self._channel(topic), self._origin)
                # delivered here too by the listener, in offset order
                return Appended(None, None, carry=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._dropped_publish(topic, exc)
                return Appended(unnumbered(template), None, carry=False)
        self._dropped_publish(topic, None)
        return Appended(unnumbered(template), None, carry=False)

    async def _since(
        self, history: RedisHistory, topic: str, since: tuple[int, str] | None
    ) -> Recovery:
        if not self._connected:
            raise ConnectionError("Redis is down")
        async with asyncio.timeout(self.publish_timeout):
            return await history.since(topic, since)

    def _client(self) -> Any:
        return self._redis

    # Private methods

    async def _unsubscribe(self, topic: str) -> None:
        await self._command(topic, subscribe=False)

    async def _resubscribe(self, topic: str) -> None:
        """Subscribe `topic` again after its slot moved, once the client knows the new owner."""
        with contextlib.suppress(Exception):  # a failure here is the listener's to hear
            await self._redis.nodes_manager.initialize()
        await self._command(topic, subscribe=True)

    def _chore(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a pub/sub command unawaited (from sync code); `stop()` cancels what is left."""
        task = asyncio.get_running_loop().create_task(coro)
        self._unsubscribing.add(task)
        task.add_done_callback(self._unsubscribing.discard)

    def _channel(self, topic: str) -> bytes:
        return channel(self.prefix, topic, self.target.cluster)

    @property
    def _verb(self) -> str:
        """PUBLISH, or SPUBLISH on a cluster: a shard channel lives on its topic's node."""
        return "SPUBLISH" if self.target.cluster else "PUBLISH"

    def _topic(self, name: bytes) -> str:
        """The topic of a channel: the prefix (and on a cluster the braces) taken off."""
        topic = name[len(self.prefix.encode()) :].decode()
        return topic[1:-1] if self.target.cluster else topic

    async def _command(self, topic: str, *, subscribe: bool) -> asyncio.Future[None] | None:
        """Send SUBSCRIBE or UNSUBSCRIBE if the wanted state still calls for it.

        Returns a future resolved when Redis confirms a SUBSCRIBE, or None when nothing was
        sent (Redis down: the listener subscribes on reconnect) or for an UNSUBSCRIBE.
        """
        assert self._lock is not None
        async with self._lock:
            wanted = self._receiver is not None and self._receiver.wanted(topic)
            pubsub = self._pubsub
            if wanted != subscribe or pubsub is None or not self._connected:
                return None
            channel = self._channel(topic)
            try:
                if subscribe:
                    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._confirming.setdefault(channel, []).append(waiter)
                    await pubsub.subscribe(channel)
                    return waiter
                await pubsub.unsubscribe(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The listener hears the same failure and resubscribes what is wanted.
                logger.debug("pub/sub command for %r failed: %r", topic, exc)
            return None

    def _delays(self) -> Iterator[float]:
        """Fresh reconnect delays (the client's backoff: exponential, capped, full jitter)."""
        return backoff(_FIRST_DELAY, self.max_backoff)

    async def _listen(self) -> None:
        """Keep one subscribed connection to Redis alive, forever; deliver what it hears.

        Nobody awaits this task but `stop()`: every failure is logged here and retried.
        """
        delays = self._delays()
        loop = asyncio.get_running_loop()
        attempts = 0
        while True:
            pubsub = Listening(self._redis, self.target.cluster)
            try:
                topics = await self._connect(pubsub)
                self.connects += 1
                self._log_recovered(self._outage.recovered(loop.time()), topics)
                attempts = 0
                delays = self._delays()
                assert self._up is not None
                self._up.set()
                await self._read(pubsub, loop)
            except asyncio.CancelledError:
                self._disconnected()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                self._disconnected()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise_lost_cancel(exc)  # stopped while Redis answered: `stop()` awaits this
                attempts += 1
                delay = next(delays)
                self._log_failure(exc, attempts, delay, loop.time())
                await asyncio.sleep(delay)

    async def _connect(self, pubsub: Any) -> int:
        """Subscribe every wanted topic, then the control channel; return how many topics.

        Only once Redis confirms the control channel (sent last, so every topic before it is
        live) is the worker `connected`.
        """
        assert self._lock is not None and self._receiver is not None
        async with self._lock:
            topics = list(self._receiver.topics)
            await pubsub.subscribe(*(self._channel(t) for t in topics), self._control)
            async with asyncio.timeout(self.connect_timeout):
                while True:
                    message = await pubsub.get_message(self.connect_timeout)
                    if message is None:
                        continue
                    self._handle(message)
                    if message["type"] in _SUBSCRIBE and message["channel"] == self._control:
                        break
            self._pubsub = pubsub
            self._connected = True
            observer = self._observer()
            if observer is not None:
                observer.backplane_connected(True)
        return len(topics)

    def _log_failure(self, exc: Exception, attempts: int, delay: float, now: float) -> None:
        """Log a failed attempt: at length when an outage starts, else in the summary."""
        if self._outage.failed(now):
            logger.error(
                "Redis backplane at %s is unreachable: %r; pushes reach this worker's "
                "subscribers only; retrying with backoff, summarised every %g s",
                self.address,
                exc,
                self._outage.interval,
            )
            return
        logger.debug(
            "Redis backplane at %s: attempt %d failed: %r; retrying in %.2f s",
            self.address,
            attempts,
            exc,
            delay,
        )
        self._log_summary(now)

    async def _read(self, pubsub: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver messages until the connection fails; PING it when it has been quiet."""
        heard = loop.time()
        pinged = False
        handle = self._handle
        while True:
            message = await pubsub.get_message(self.ping_interval)
            raise_lost_cancel()  # redis-py may answer a cancelled read: `stop()` awaits this
            now = loop.time()
            if message is None:
                if now - heard >= 2 * self.ping_interval:
                    raise ConnectionError(f"no answer from Redis for {now - heard:.1f} s")
                if not pinged:
                    pinged = await pubsub.ping()
                    if not pinged:
                        heard = now  # nothing to ask: a cluster's shards tell by failing
                continue
            heard = now
            pinged = False
            handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        receiver = self._receiver
        if kind in _MESSAGE and receiver is not None:
            data: bytes = message["data"]
            mark = data[_ORIGIN_LEN : _ORIGIN_LEN + 1]
            if mark == b"{":
                if data[:_ORIGIN_LEN] != self._origin:  # else delivered here already
                    receiver.deliver(self._topic(message["channel"]), data[_ORIGIN_LEN:].decode())
            elif mark.isdigit():
                # numbered by the history script: `<origin><offset> <frame>`, delivered by
                # every worker (the publishing one too) in the order Redis numbered them
                number, _, frame = data[_ORIGIN_LEN:].partition(b" ")
                receiver.deliver(self._topic(message["channel"]), frame.decode(), int(number))
            elif data[:_ORIGIN_LEN] != self._origin:
                close = parse_close(data, _ORIGIN_LEN)
                if close is not None:  # anything else unknown is ignored: a later format
                    receiver.close_local(self._topic(message["channel"]), *close)
        elif kind in _SUBSCRIBE:
            for waiter in self._confirming.pop(message["channel"], ()):
                if not waiter.done():
                    waiter.set_result(None)
        elif kind == "sunsubscribe" and receiver is not None:
            # On a cluster, Redis drops a shard subscription whose slot moved to another
            # node; the topic is still wanted here, so subscribe it again, on its new owner.
            topic = self._topic(message["channel"])
            if receiver.wanted(topic):
                self._chore(self._resubscribe(topic))

    def _disconnected(self) -> None:
        observer = self._observer()
        if self._connected and observer is not None:
            observer.backplane_connected(False)
        self._connected = False
        self._pubsub = None
        if self._up is not None:
            self._up.clear()
        for waiters in self._confirming.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._confirming.clear()


# what redis-py calls a message and a subscription's confirmation, plain and sharded
_MESSAGE = frozenset({"message", "smessage"})
_SUBSCRIBE = frozenset({"subscribe", "ssubscribe"})


class _SharedHistory(HistoryStore):
    """The history store a `RedisBackplane` hands out: its own methods, bound to the stream."""

    def __init__(
        self,
        append: Callable[[str, PushTemplate], Awaitable[Appended]],
        since: Callable[[str, tuple[int, str] | None], Awaitable[Recovery]],
    ) -> None:
        self._append = append
        self._since = since

    async def append(self, topic: str, template: PushTemplate) -> Appended:
        return await self._append(topic, template)

    async def since(self, topic: str, since: tuple[int, str] | None) -> Recovery:
        return await self._since(topic, since)
