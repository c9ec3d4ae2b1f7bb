"""Publishing from outside a router: a Celery task, a Django view, a cron job, a script.

`Publisher` (blocking, no event loop) and `AsyncPublisher` (asyncio) write to Redis exactly
what a worker's `RedisBackplane` writes (`_wire.RedisFormat`): a push published here reaches
every subscriber on every worker sharing that Redis, numbered and kept in the history when
the workers keep one. Neither needs a router, a lifespan or a server.

Rules of a publisher (this module alone changes them):

    It connects on first use and keeps its connection until `close()` (or the end of its
    `with` block). Its pushes on a topic reach every subscriber in the order `publish()` was
    called: the blocking one sends one command at a time (under a lock, for threads), the
    asyncio one queues every command at call time behind one ordered, pipelined writer
    (`_ordered`), so concurrent, unawaited publishes keep their order too, and those queued
    while a round trip is out leave together in the next one.

    A publish Redis did not take (unreachable, timed out, error reply) raises
    `PublishFailed`, a `ConnectionError`; nothing is retried behind the caller's back but
    once on a fresh connection, as the workers do.

    `history_size` and `history_ttl` must be the workers' (`SocketRouter(history_size=...)`):
    with a size the publish is numbered by the same script, without one it is not.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

from ..errors import ObservableSocketError
from ..options import HistoryOptions
from ..types import Header, Payload
from ._outage import redact_url
from ._redis_urls import aclose_client, async_client, close_client, parse, sync_client
from ._wire import RedisFormat

__all__ = ["AsyncPublisher", "PublishFailed", "Publisher"]

#: the workers' default prefix (`RedisBackplane(prefix=...)`)
DEFAULT_PREFIX = "observable_socket:"


class PublishFailed(ObservableSocketError, ConnectionError):
    """Redis did not take a command: unreachable, too slow, or it answered an error."""


class _Base:
    """What both publishers share: the URL, the format, error messages."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        history_size: int = 0,
        history_ttl: float = 300.0,
        timeout: float = 2.0,
    ) -> None:
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.target = parse(url)
        #: where Redis is, for messages: the URL without its password
        self.address = redact_url(url)
        self.timeout = float(timeout)
        #: the workers' format for this prefix, topology and history
        self.format = RedisFormat(
            prefix, self.target.cluster, HistoryOptions(size=history_size, ttl=history_ttl)
        )
        # the redis-py client, made on first use
        self._client: Any = None
        # the blocking publisher sends one command at a time, so its order holds across
        # threads too (the asyncio one orders through its writer instead)
        self._lock = threading.Lock()

    @property
    def prefix(self) -> str:
        """The channel and key prefix, the workers' own."""
        return self.format.prefix

    def _options(self, retry: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
        }
        if not self.target.cluster:
            from redis.backoff import NoBackoff

            # once more on a fresh connection (a pooled one that died with a restart, or a
            # master that failed over), as the workers do; never a retry loop
            options["retry"] = retry(NoBackoff(), 1)
        return options

    def _failed(self, what: str, exc: BaseException) -> PublishFailed:
        return PublishFailed(f"Redis at {self.address} did not take {what}: {exc!r}")


def _translated(exc: BaseException) -> bool:
    """True for the errors a publisher reports as PublishFailed (Redis's and the network's)."""
    from redis.exceptions import RedisError

    return isinstance(exc, RedisError | OSError | TimeoutError)


class Publisher(_Base):
    """Publishes to the subscribers of every worker sharing a Redis, with no event loop.

    Args:
        url: the workers' backplane URL: `redis://`, `rediss://`, `unix://`,
            `redis+sentinel://` or `redis+cluster://` (see docs/deployment.md).
        prefix: the workers' prefix.
        history_size: the workers' `history_size` (0: no history, pushes not numbered).
        history_ttl: the workers' `history_ttl`, in seconds.
        timeout: seconds to connect, and for each command.

    Raises:
        ValueError: a malformed URL or an option out of range, naming it.
    """

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Public API

    def publish(self, topic: str, payload: Payload = None, headers: Header | None = None) -> None:
        """Push `payload` to every subscriber of `topic` on every worker.

        Raises:
            PublishFailed: Redis did not take it.
            EncodeError: the payload or headers are not JSON; TypeError: topic not a str.
        """
        script, command = self.format.publish(topic, payload, headers)
        with self._lock:
            try:
                if script is None:
                    self._redis().execute_command(*command)
                    return
                from redis.exceptions import NoScriptError

                try:
                    self._redis().evalsha(script.sha, 2, *command)
                except NoScriptError:
                    self._redis().script_load(script.text)
                    self._redis().evalsha(script.sha, 2, *command)
            except Exception as exc:
                if _translated(exc):
                    raise self._failed(f"a publish on {topic!r}", exc) from exc
                raise

    def close_subscribers(self, topic: str, code: int = 1000, reason: str = "") -> None:
        """Close, on every worker, each connection subscribed to `topic`.

        It reaches them after every push this publisher sent on `topic` before.

        Raises:
            PublishFailed: Redis did not take it.
            ValueError: a code a server may not send, or a reason over 123 bytes in UTF-8.
        """
        command = self.format.close(topic, code, reason)
        with self._lock:
            self._run(f"a close on {topic!r}", lambda redis: redis.execute_command(*command))

    def presence(self, topic: str) -> dict[str, Any]:
        """The members of `topic` on every worker: `{member_id: info}`.

        Raises:
            PublishFailed: Redis could not be read.
        """
        key = self.format.presence_key(topic)
        with self._lock:
            raw = self._run("a presence read", lambda redis: redis.hgetall(key))
            workers = self.format.workers(raw)
            if not workers:
                return {}
            flags = self._run("a presence read", lambda redis: self._exists(redis, workers))
        return self.format.presence_result(raw, zip(workers, flags, strict=True))

    def history(self, topic: str, since: object = 0) -> list[Any]:
        """The pushes kept on `topic` after `since`, oldest first, as clients receive them.

        Args:
            since: an offset (0: everything kept), or a client's position
                `{"offset": n, "epoch": e}` (another epoch: everything kept).

        Raises:
            PublishFailed: Redis could not be read.
            ValueError: `since` is neither.
        """
        reads = self.format.history_reads(topic)
        with self._lock:
            replies = self._run("a history read", lambda redis: _pipeline(redis, reads))
        return self.format.history_result(replies, since)

    def close(self) -> None:
        """Close the connection to Redis (idempotent); a later call connects again."""
        client, self._client = self._client, None
        if client is not None:
            close_client(client)

    # Private methods

    def _redis(self) -> Any:
        if self._client is None:
            from redis.retry import Retry

            self._client = sync_client(self.target, **self._options(Retry))
        return self._client

    def _run(self, what: str, call: Any) -> Any:
        try:
            return call(self._redis())
        except Exception as exc:
            if _translated(exc):
                raise self._failed(what, exc) from exc
            raise

    def _exists(self, redis: Any, workers: list[str]) -> list[Any]:
        return _pipeline(redis, [("EXISTS", self.format.alive_key(w)) for w in workers])


def _pipeline(redis: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(pipe.execute())


class AsyncPublisher(_Base):
    """Publishes to every worker sharing a Redis, from asyncio code outside a router.

    Concurrent publishes keep their call order (one ordered, pipelined writer). Arguments
    are `Publisher`'s.
    """

    # the ordered writer, made on first publish
    _writer: Any = None

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Public API

    async def publish(
        self, topic: str, payload: Payload = None, headers: Header | None = None
    ) -> None:
        """Push `payload` to every subscriber of `topic` on every worker.

        Queued at once, in call order; returns once Redis took it.

        Raises:
            PublishFailed: Redis did not take it (or not within `timeout`).
            EncodeError: the payload or headers are not JSON; TypeError: topic not a str.
        """
        script, command = self.format.publish(topic, payload, headers)
        writer = self._ordered()
        if script is None:
            sent = writer.send(*command)
        else:
            sent = writer.run_script(script, command[:2], command[2:])
        # the writer bounds each round trip: no timer per publish
        await self._waited(sent, f"a publish on {topic!r}")

    async def close_subscribers(self, topic: str, code: int = 1000, reason: str = "") -> None:
        """Close, on every worker, each connection subscribed to `topic` (see `Publisher`)."""
        command = self.format.close(topic, code, reason)
        await self._waited(self._ordered().send(*command), f"a close on {topic!r}")

    async def presence(self, topic: str) -> dict[str, Any]:
        """The members of `topic` on every worker: `{member_id: info}`."""
        key = self.format.presence_key(topic)
        raw = await self._wait(self._redis().hgetall(key), "a presence read")
        workers = self.format.workers(raw)
        if not workers:
            return {}
        reads = [("EXISTS", self.format.alive_key(w)) for w in workers]
        flags = await self._wait(_apipeline(self._redis(), reads), "a presence read")
        return self.format.presence_result(raw, zip(workers, flags, strict=True))

    async def history(self, topic: str, since: object = 0) -> list[Any]:
        """The pushes kept on `topic` after `since` (see `Publisher.history`)."""
        reads = self.format.history_reads(topic)
        replies = await self._wait(_apipeline(self._redis(), reads), "a history read")
        return self.format.history_result(replies, since)

    async def aclose(self) -> None:
        """Send what is queued, then close the connection to Redis (idempotent)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.aclose()
        client, self._client = self._client, None
        if client is not None:
            await aclose_client(client)

    # Private methods

    def _redis(self) -> Any:
        if self._client is None:
            from redis.asyncio.retry import Retry

            self._client = async_client(self.target, **self._options(Retry))
        return self._client

    def _ordered(self) -> Any:
        if self._writer is None:
            from ._ordered import OrderedWriter

            self._writer = OrderedWriter(self._redis(), self.timeout)
        return self._writer

    async def _wait(self, pending: Any, what: str) -> Any:
        return await self._waited(asyncio.wait_for(pending, self.timeout), what)

    async def _waited(self, pending: Any, what: str) -> Any:
        try:
            return await pending
        except Exception as exc:
            if _translated(exc):
                raise self._failed(what, exc) from exc
            raise


async def _apipeline(redis: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(await pipe.execute())
