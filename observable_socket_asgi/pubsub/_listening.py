"""The Redis listener's subscriptions: plain pub/sub on one server, sharded on a cluster.

On a Redis Cluster (7 or newer) each topic is a shard channel (`SSUBSCRIBE`), heard from
the node that owns its slot: redis-py's cluster pub/sub keeps one connection per shard that
holds subscribed topics. When a slot moves, Redis drops its subscriptions (`sunsubscribe`)
and the transport subscribes them again (`redis_backplane`). The listener speaks to either
through this one shape, and reads the sharded kinds (`smessage`, `ssubscribe`) as the plain
ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Listening"]

#: seconds one read of a cluster's shard waits: a message on another shard waits at most
#: this times the number of shards subscribed
SHARD_POLL = 0.005


class Listening:
    """One listener's pub/sub connection(s) on `client`.

    Args:
        client: a `redis.asyncio` client, or a `redis.asyncio.cluster.RedisCluster`.
        cluster: True for a cluster: sharded subscriptions.
    """

    def __init__(self, client: Any, cluster: bool) -> None:
        self.cluster = cluster
        self.pubsub: Any = client.pubsub()

    async def subscribe(self, *channels: bytes) -> None:
        """Subscribe `channels`; the confirmations arrive as messages."""
        if not self.cluster:
            await self.pubsub.subscribe(*channels)
            return
        from redis.exceptions import ResponseError

        try:
            await self.pubsub.ssubscribe(*channels)
        except ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise RuntimeError(
                    "the Redis Cluster backplane needs Redis 7 or newer (sharded pub/sub, "
                    f"SSUBSCRIBE): {exc}"
                ) from exc
            raise

    async def unsubscribe(self, *channels: bytes) -> None:
        """Unsubscribe `channels`."""
        if self.cluster:
            await self.pubsub.sunsubscribe(*channels)
        else:
            await self.pubsub.unsubscribe(*channels)

    async def get_message(self, wait: float) -> dict[str, Any] | None:
        """The next message or confirmation within `wait` seconds, else None."""
        if not self.cluster:
            message: dict[str, Any] | None = await self.pubsub.get_message(timeout=wait)
            return message
        # redis-py reads one shard's connection per call, waiting up to its timeout there:
        # a long wait on a quiet shard would hold back a busy one, so each call waits only
        # SHARD_POLL, going round the shards until `wait` has passed.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            started = loop.time()
            message = await self.pubsub.get_sharded_message(timeout=SHARD_POLL)
            now = loop.time()
            if message is not None or now >= deadline:
                return message
            if now - started < SHARD_POLL / 2:  # no shard to wait on yet: do not spin
                await asyncio.sleep(SHARD_POLL)

    async def ping(self) -> bool:
        """PING the connection; its answer arrives as a message. False when the connection
        cannot be pinged this way (a cluster's per-shard connections: TCP keepalive and
        their read errors tell a dead node instead)."""
        if self.cluster:
            return False
        await self.pubsub.ping()
        return True

    async def aclose(self) -> None:
        """Close every connection."""
        await self.pubsub.aclose()
