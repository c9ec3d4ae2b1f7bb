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

    A publish delivers to this worker's subscribers at once, then sends one PUBLISH whose
    body is this worker's id followed by the already encoded frame; the listener skips its
    own worker's messages. While `connected` is False the PUBLISH is not attempted: the
    push reaches the publishing worker's subscribers only, is counted in `dropped`, and is
    never replayed (at-most-once delivery).

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
import os
import time
from collections.abc import Iterator
from typing import Any

from .._backoff import backoff
from ._history import PushTemplate, Recovery, unnumbered
from ._idempotency import IdempotencyStore
from ._outage import OutageReport, Summary, redact_url
from .presence import Presence
from .topics import Backplane

try:
    import redis.asyncio as aioredis
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
_ORIGIN_LEN = 16
# The ceiling of the first reconnect delay, in seconds; it doubles up to max_backoff.
_FIRST_DELAY = 0.1


class RedisBackplane(Backplane):
    """Publishes reach the subscribers of every worker that shares the Redis server.

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
        super().__init__()
        self.url = url
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
        self._origin = os.urandom(_ORIGIN_LEN // 2).hex().encode()
        self._control = f"{prefix}\x00worker:{self._origin.decode()}".encode()
        self._redis: Any = None
        self._pubsub: Any = None
        self._connected = False
        # set while connected; start() waits on it briefly so a worker starts up connected
        self._up: asyncio.Event | None = None
        self._listener: asyncio.Task[None] | None = None
        # serialises pub/sub commands on the one listener connection
        self._lock: asyncio.Lock | None = None
        # channel -> futures waiting for Redis to confirm a SUBSCRIBE
        self._confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        # UNSUBSCRIBE tasks started from sync on_close callbacks
        self._unsubscribing: set[asyncio.Task[None]] = set()
        # the topics' history in Redis streams; None when history_size is 0
        self._shared_history: RedisHistory | None = None

    # Public API

    @property
    def connected(self) -> bool:
        """True while the listener holds a live, subscribed connection to Redis."""
        return self._connected

    # Backplane hooks

    async def _start(self) -> None:
        # TCP keepalive notices a peer gone without a word; redis-py refuses the option on a
        # unix:// URL (no TCP there, and the peer is on this machine).
        keepalive: dict[str, Any] = (
            {} if self.url.startswith("unix://") else {"socket_keepalive": True}
        )
        self._redis = aioredis.Redis.from_url(
            self.url,
            # The listener owns reconnection (with backoff and resubscription), so redis-py
            # must report a failure at once instead of retrying behind its back.
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=self.connect_timeout,
            **keepalive,
        )
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

    async def _stop(self) -> None:
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
                await self._redis.aclose()
            self._redis = None

    async def _remote_subscribe(self, topic: str) -> None:
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

    def _remote_unsubscribe(self, topic: str) -> None:
        if self._lock is None:
            return
        task = asyncio.get_running_loop().create_task(self._unsubscribe(topic))
        self._unsubscribing.add(task)
        task.add_done_callback(self._unsubscribing.discard)

    async def _remote_publish(self, topic: str, frame: str) -> None:
        observer = self._observer
        if not self._connected or self._redis is None:
            self._dropped_publish(topic, None)
            return
        channel, body = self._channel(topic), self._origin + frame.encode()
        started = time.perf_counter() if observer is not None else 0.0
        try:
            async with asyncio.timeout(self.publish_timeout):
                try:
                    await self._redis.publish(channel, body)
                except aioredis.ConnectionError:
                    # A pooled connection that died with a Redis restart fails once; redis-py
                    # has dropped it, so a second attempt runs on a fresh connection.
                    await self._redis.publish(channel, body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._dropped_publish(topic, exc)
            return
        if observer is not None:
            observer.backplane_published(time.perf_counter() - started)

    # Private methods: telling an outage

    def _dropped_publish(self, topic: str, exc: BaseException | None) -> None:
        self.dropped += 1
        if self._observer is not None:
            self._observer.backplane_dropped()
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

    def configure(
        self, *, history_size: int = 0, history_ttl: float = 300.0, **options: Any
    ) -> None:
        # only the history settings matter here; the rest go to `Backplane.configure` as given
        super().configure(history_size=history_size, history_ttl=history_ttl, **options)
        # the history lives in Redis, shared by every worker, instead of in this process
        self.history = None
        self._shared_history = (
            RedisHistory(self._client, self.prefix, history_size, history_ttl)
            if history_size > 0
            else None
        )

    def idempotency_store(self, max_entries: int, max_bytes: int) -> IdempotencyStore:
        return RedisIdempotencyStore(self._client, self.prefix, max_bytes)

    def _make_presence(self, ttl: float, max_info_bytes: int) -> Presence:
        return RedisPresence(self._client, self.prefix, ttl, max_info_bytes)

    def _shares_history(self) -> bool:
        return self._shared_history is not None

    async def _publish_positioned(self, topic: str, template: PushTemplate) -> int:
        history = self._shared_history
        assert history is not None
        if self._connected and self._redis is not None:
            try:
                async with asyncio.timeout(self.publish_timeout):
                    await history.publish(topic, template, self._channel(topic), self._origin)
                # delivered here too by the listener, in offset order
                return self.subscribers(topic)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._dropped_publish(topic, exc)
                return self.deliver(topic, unnumbered(template))
        self._dropped_publish(topic, None)
        return self.deliver(topic, unnumbered(template))

    async def _history_since(self, topic: str, since: tuple[int, str] | None) -> Recovery:
        history = self._shared_history
        assert history is not None
        if not self._connected:
            raise ConnectionError("Redis is down")
        async with asyncio.timeout(self.publish_timeout):
            return await history.since(topic, since)

    def _client(self) -> Any:
        return self._redis

    # Private methods

    async def _unsubscribe(self, topic: str) -> None:
        await self._command(topic, subscribe=False)

    def _channel(self, topic: str) -> bytes:
        return (self.prefix + topic).encode()

    async def _command(self, topic: str, *, subscribe: bool) -> asyncio.Future[None] | None:
        """Send SUBSCRIBE or UNSUBSCRIBE if the wanted state still calls for it.

        Returns a future resolved when Redis confirms a SUBSCRIBE, or None when nothing was
        sent (Redis down: the listener subscribes on reconnect) or for an UNSUBSCRIBE.
        """
        assert self._lock is not None
        async with self._lock:
            wanted = topic in self._subscribers
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

        Nobody awaits this task but `_stop()`: every failure is logged here and retried.
        """
        delays = self._delays()
        loop = asyncio.get_running_loop()
        attempts = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                assert self._lock is not None
                async with self._lock:
                    topics = list(self._subscribers)
                    # The control channel goes last: once Redis confirms it, every topic
                    # before it is live, and only then is the worker `connected`.
                    await pubsub.subscribe(*(self._channel(t) for t in topics), self._control)
                    async with asyncio.timeout(self.connect_timeout):
                        while True:
                            message = await pubsub.get_message(timeout=self.connect_timeout)
                            if message is None:
                                continue
                            self._handle(message)
                            if message["type"] == "subscribe" and (
                                message["channel"] == self._control
                            ):
                                break
                    self._pubsub = pubsub
                    self._connected = True
                    if self._observer is not None:
                        self._observer.backplane_connected(True)
                self.connects += 1
                self._log_recovered(self._outage.recovered(loop.time()), len(topics))
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
                attempts += 1
                delay = next(delays)
                if self._outage.failed(loop.time()):
                    logger.error(
                        "Redis backplane at %s is unreachable: %r; pushes reach this worker's "
                        "subscribers only; retrying with backoff, summarised every %g s",
                        self.address,
                        exc,
                        self._outage.interval,
                    )
                else:
                    logger.debug(
                        "Redis backplane at %s: attempt %d failed: %r; retrying in %.2f s",
                        self.address,
                        attempts,
                        exc,
                        delay,
                    )
                    self._log_summary(loop.time())
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(delay)

    async def _read(self, pubsub: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver messages until the connection fails; PING it when it has been quiet."""
        heard = loop.time()
        pinged = False
        handle = self._handle
        while True:
            message = await pubsub.get_message(timeout=self.ping_interval)
            now = loop.time()
            if message is None:
                if now - heard >= 2 * self.ping_interval:
                    raise ConnectionError(f"no answer from Redis for {now - heard:.1f} s")
                if not pinged:
                    await pubsub.ping()
                    pinged = True
                continue
            heard = now
            pinged = False
            handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            data: bytes = message["data"]
            if data[_ORIGIN_LEN : _ORIGIN_LEN + 1] != b"{":
                # numbered by the history script: `<origin><offset> <frame>`, delivered by
                # every worker (the publishing one too) in the order Redis numbered them
                number, _, frame = data[_ORIGIN_LEN:].partition(b" ")
                topic = message["channel"][len(self.prefix.encode()) :].decode()
                self.deliver(topic, frame.decode(), int(number))
                return
            if data[:_ORIGIN_LEN] == self._origin:
                return  # published here, and already delivered here
            topic = message["channel"][len(self.prefix.encode()) :].decode()
            self.deliver(topic, data[_ORIGIN_LEN:].decode())
        elif kind == "subscribe":
            for waiter in self._confirming.pop(message["channel"], ()):
                if not waiter.done():
                    waiter.set_result(None)

    def _disconnected(self) -> None:
        if self._connected and self._observer is not None:
            self._observer.backplane_connected(False)
        self._connected = False
        self._pubsub = None
        if self._up is not None:
            self._up.clear()
        for waiters in self._confirming.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._confirming.clear()
