"""What Redis keeps besides pub/sub: topic history, idempotent answers, presence.

Each store is a few Lua scripts, so every step that must be atomic is one round trip.

History (one per topic with a publish in the last `ttl` seconds; only a publish makes one):

    `<prefix>h:<topic>:m`  a hash: `e` the epoch, `s` the newest offset
    `<prefix>h:<topic>:s`  a stream of `{o: offset, f: frame}`, at most `size` entries, none
                           older than `ttl` (XADD MAXLEN, XTRIM MINID); both keys expire
                           `ttl` seconds after the last publish

    The publish script takes the next offset, fills it into the frame, appends the frame
    and PUBLISHes it in one step, so the order of offsets is the order every worker hears
    them in, and a reader that subscribed before reading the stream misses nothing. Redis
    restarted empty has no hash: the next publish makes a new epoch. A read (a subscribe)
    never writes: a topic without a hash is at offset 0 of the empty epoch `-<ms>` (see
    `_history`), so subscribing to any number of names leaves no key behind.

Idempotent answers: `<prefix>i:<key>` holds `R<fingerprint>:` while a worker runs the route
(a lease it renews) and `D<fingerprint>:<frame>` for `ttl` seconds after.

Presence: `<prefix>p:<topic>` is a hash of member id -> info; `<prefix>alive:<worker>`
expires `ttl` seconds after its worker last renewed it, and a member whose worker has no
such key is dropped from answers and deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from .._concurrency import raise_lost_cancel
from ._history import PushTemplate, Recovery, new_epoch
from ._idempotency import Claim, IdempotencyStore
from ._ordered import OrderedWriter
from ._ordered import Script as OrderedScript
from ._wire import PUBLISH_SCRIPT, SHARDED_PUBLISH_SCRIPT, alive_key, history_keys, presence_key
from .presence import WORKER_ID, Presence

__all__ = ["RedisHistory", "RedisIdempotencyStore", "RedisPresence"]

logger = logging.getLogger("observable_socket_asgi.redis")

# ARGV: since offset (-1: none), since epoch, ttl ms, size. Reads only: a topic without a
# hash is at offset 0 of the empty epoch '-<now ms>', and no key is made for it.
_SINCE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
local empty = '-' .. string.format('%.0f', ms)
local epoch = redis.call('HGET', KEYS[1], 'e')
local since = tonumber(ARGV[1])
local given = ARGV[2]
if string.sub(given, 1, 1) == '-' then
  local read = tonumber(string.sub(given, 2))
  if since ~= 0 or not read or read > ms or ms - read >= ttl then
    since = -1
  elseif not epoch then
    return {empty, 0, 1}
  else
    given = epoch
  end
end
if not epoch then return {empty, 0, 0} end
local top = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
if since < 0 or given ~= epoch or since > top then return {epoch, top, 0} end
if since == top then return {epoch, top, 1} end
local need = top - since
if need > tonumber(ARGV[4]) then return {epoch, top, 0} end
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', need)
if #entries ~= need then return {epoch, top, 0} end
local horizon = ms - ttl
local oldest = entries[#entries]
local at = tonumber(string.match(oldest[1], '^(%d+)'))
if at <= horizon or tonumber(oldest[2][2]) ~= since + 1 then return {epoch, top, 0} end
local result = {epoch, top, 1}
for i = #entries, 1, -1 do
  result[#result + 1] = entries[i][2][4]
end
return result
"""

_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# ARGV: our running marker, then the answer (or '' to release), ttl ms
_FINISH = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


Client = Callable[[], Any]
"""Returns the backplane's current `redis.asyncio.Redis` (it is replaced on restart)."""


class _Script:
    """A Lua script run by its digest, loaded again when Redis has lost it (a restart)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, client: Client, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        redis = client()
        if redis is None:
            raise ConnectionError("the Redis backplane is not started")
        try:
            try:
                return await redis.evalsha(self.sha, len(keys), *keys, *args)
            except RedisConnectionError:
                # A pooled connection that died with a Redis restart fails once; redis-py
                # has dropped it, so a second attempt runs on a fresh connection.
                return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.text, len(keys), *keys, *args)


_SINCE_SCRIPT = _Script(_SINCE)
_CLAIM_SCRIPT = _Script(_CLAIM)
_FINISH_SCRIPT = _Script(_FINISH)
_RENEW_SCRIPT = _Script(_RENEW)


class RedisHistory:
    """Topic history in Redis streams, shared by every worker on the same Redis.

    Args:
        client: returns the `redis.asyncio.Redis` client to use.
        prefix: key prefix, the backplane's.
        size: pushes kept per topic.
        ttl: seconds a push is kept; the topic's keys expire this long after its last publish.
        cluster: on a Redis Cluster: keys hash-tagged by topic, the push sent by SPUBLISH.
        writer: sends the publish script in order with every other publish of the process
            (`_ordered.OrderedWriter`); None: straight on the client.
    """

    def __init__(
        self,
        client: Client,
        prefix: str,
        size: int,
        ttl: float,
        *,
        cluster: bool = False,
        writer: OrderedWriter | None = None,
    ) -> None:
        self.prefix = prefix
        self.size = size
        self.ttl = ttl
        self.cluster = cluster
        self._client = client
        self._writer = writer
        text = SHARDED_PUBLISH_SCRIPT if cluster else PUBLISH_SCRIPT
        # the same script, for the ordered writer and for a client without one
        self._script = OrderedScript(text)
        self._direct = _Script(text)

    def _keys(self, topic: str) -> list[str]:
        return history_keys(self.prefix, topic, self.cluster)

    async def publish(
        self, topic: str, template: PushTemplate, channel: bytes, origin: bytes
    ) -> tuple[int, str, str]:
        """Append, number and PUBLISH a push; return its `(offset, epoch, frame)`.

        The PUBLISH body is `origin`, the offset, a space, then the frame.
        """
        keys = self._keys(topic)
        args = [template.head, template.tail, self.size, _ms(self.ttl), new_epoch()]
        args += [channel, origin]
        if self._writer is not None:
            offset, epoch = await self._writer.run_script(self._script, keys, args)
        else:
            offset, epoch = await self._direct(self._client, keys, args)
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        frame = f'{template.head}"offset":{offset},"epoch":"{epoch}"{template.tail}'
        return int(offset), epoch, frame

    async def since(self, topic: str, since: tuple[int, str] | None) -> Recovery:
        """What a client at `since` missed on `topic`, read atomically with the position."""
        offset, epoch = since if since is not None else (-1, "")
        reply = await _SINCE_SCRIPT(
            self._client,
            self._keys(topic),
            [offset, epoch, _ms(self.ttl), self.size],
        )
        current = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        frames = tuple(f.decode() if isinstance(f, bytes) else str(f) for f in reply[3:])
        return Recovery(bool(reply[2]), int(reply[1]), current, frames)


class RedisIdempotencyStore(IdempotencyStore):
    """Idempotent answers in Redis, so a retry on another worker gets the first answer."""

    def __init__(self, client: Client, prefix: str, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.prefix = prefix
        self.max_bytes = max_bytes
        self._client = client

    async def claim(self, key: str, fp: str, lease: float) -> Claim | None:
        held = await _CLAIM_SCRIPT(
            self._client, [self.prefix + "i:" + key], [f"R{fp}:", _ms(lease)]
        )
        if held is None:
            return None
        text = held.decode() if isinstance(held, bytes) else str(held)
        held_fp, _, frame = text[1:].partition(":")
        return Claim(held_fp, frame if text[0] == "D" else None)

    async def finish(self, key: str, fp: str, frame: str | None, ttl: float) -> None:
        if frame is not None and len(frame) > self.max_bytes:
            logger.warning(
                "answer of %d characters not kept: over idempotency_max_bytes", len(frame)
            )
            frame = None
        answer = "" if frame is None else f"D{fp}:{frame}"
        await _FINISH_SCRIPT(
            self._client, [self.prefix + "i:" + key], [f"R{fp}:", answer, _ms(ttl)]
        )

    async def renew(self, key: str, fp: str, lease: float) -> None:
        await _RENEW_SCRIPT(self._client, [self.prefix + "i:" + key], [f"R{fp}:", _ms(lease)])


class RedisPresence(Presence):
    """Presence in Redis hashes, with a liveness key per worker.

    A worker renews its liveness key and its topics' hashes every `ttl / 3` seconds; a
    worker killed without a goodbye has its members dropped within `ttl` seconds.
    """

    def __init__(
        self,
        client: Client,
        prefix: str,
        ttl: float = 15.0,
        max_info_bytes: int = 4096,
        worker: str = WORKER_ID,
        *,
        cluster: bool = False,
    ) -> None:
        super().__init__(ttl, max_info_bytes)
        self.prefix = prefix
        self.cluster = cluster
        self._client = client
        self._alive_key = alive_key(prefix, worker)
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._renewer is None:
            with contextlib.suppress(Exception):  # Redis down: the renewer keeps trying
                await self._renew_once()
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_forever(), name="observable-socket presence"
            )

    async def stop(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        await super().stop()
        # a clean stop says goodbye at once instead of waiting for the ttl
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                pipe = self._redis().pipeline(transaction=False)
                for topic, members in self._local.items():
                    pipe.hdel(self._key(topic), *members)
                pipe.delete(self._alive_key)
                await pipe.execute()

    async def members(self, topic: str) -> dict[str, Any]:
        key = self._key(topic)
        raw: dict[bytes, bytes] = await self._redis().hgetall(key)
        if not raw:
            return {}
        workers = sorted({field.split(b".", 1)[0] for field in raw})
        keys = [alive_key(self.prefix, w.decode()) for w in workers]
        if self.cluster:  # one key per command: the workers' keys live on several nodes
            pipe = self._redis().pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            alive = await pipe.execute()
        else:
            alive = await self._redis().mget(keys)
        live = {w for w, flag in zip(workers, alive, strict=True) if flag is not None}
        dead = [field for field in raw if field.split(b".", 1)[0] not in live]
        if dead:
            await self._redis().hdel(key, *dead)
        return {f.decode(): orjson.loads(v) for f, v in raw.items() if f not in dead}

    # Hooks

    async def _remote_join(self, topic: str, member: str, data: bytes) -> None:
        key = self._key(topic)
        pipe = self._redis().pipeline(transaction=False)
        pipe.set(self._alive_key, b"1", px=_ms(self.ttl))
        pipe.hset(key, member, data)
        pipe.pexpire(key, _ms(self.ttl))
        await pipe.execute()

    async def _remote_leave(self, topic: str, member: str) -> None:
        await self._redis().hdel(self._key(topic), member)

    # Private methods

    def _key(self, topic: str) -> str:
        return presence_key(self.prefix, topic, self.cluster)

    def _redis(self) -> Any:
        redis = self._client()
        if redis is None:
            raise ConnectionError("the Redis backplane is not started")
        return redis

    async def _renew_once(self) -> None:
        pipe = self._redis().pipeline(transaction=False)
        pipe.set(self._alive_key, b"1", px=_ms(self.ttl))
        for topic, members in self._local.items():
            # members may have been lost with a Redis restart: write them again
            key = self._key(topic)
            pipe.hset(key, mapping=dict(members))
            pipe.pexpire(key, _ms(self.ttl))
        await pipe.execute()

    async def _renew_forever(self) -> None:
        """Renew liveness every ttl / 3; nobody awaits this but `stop()`: it logs its errors."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._renew_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_lost_cancel(exc)  # stopped while Redis answered: `stop()` awaits this
                logger.warning("could not renew presence in Redis: %r", exc)
            raise_lost_cancel()
