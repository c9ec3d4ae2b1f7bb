"""The workers' format on Redis, for anything that publishes beside them.

What a worker of `RedisBackplane` hears and keeps (see `redis_backplane` and
`_redis_stores` for the worker's side; docs/deployment.md "Several hosts" for the same in
prose):

    channel     `<prefix><topic>`; on a Redis Cluster `<prefix>{<topic>}`, a shard channel
                (SPUBLISH), so a topic's channel and keys hash to one slot
    push        body `<origin><frame>`: a 16-character origin (the publisher's id, which a
                worker skips when it is its own), then the push frame, which starts with `{`
    numbered    with history: the script `PUBLISH_SCRIPT` numbers the push, keeps it and
                publishes `<origin><offset> <frame>`
    close       `<origin>!close <code> <reason>` (`_control`)
    history     `<prefix>h:<topic>:m` (hash: `e` epoch, `s` newest offset) and
                `<prefix>h:<topic>:s` (stream of `o` offset, `f` frame); on a cluster the
                topic is hash-tagged: `<prefix>h:{<topic>}:m`
    presence    `<prefix>p:<topic>` (hash: member id -> info JSON), cluster `p:{<topic>}`;
                `<prefix>alive:<worker>` exists while the worker lives; a member id is
                `<worker>.<n>`

Pure: the workers' modules (`redis_backplane`, `_redis_stores`) and the publishers read the
format from here, so both ends cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..envelope import encode_push
from ..options import HistoryOptions
from ..types import Header, Payload
from ._control import close_body
from ._history import OFFSET, parse_since, split_push
from ._ordered import Script

__all__ = [
    "ORIGIN_LEN",
    "PUBLISH_SCRIPT",
    "RedisFormat",
    "SHARDED_PUBLISH_SCRIPT",
    "alive_key",
    "channel",
    "history_keys",
    "new_origin",
    "presence_key",
    "tagged",
]

#: the width of a publisher's id at the start of every body (hex characters)
ORIGIN_LEN = 16

# KEYS: the history's hash and stream; ARGV: the frame's head and tail around its position,
# size, ttl ms, the epoch for a new log, the channel, the origin
PUBLISH_SCRIPT = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'e', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
local frame = ARGV[1] .. '"offset":' .. offset .. ',"epoch":"' .. epoch .. '"' .. ARGV[2]
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'o', offset, 'f', frame)
redis.call('XTRIM', KEYS[2], 'MINID', tostring(ms - tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[6], ARGV[7] .. offset .. ' ' .. frame)
return {offset, epoch}
"""

#: the same on a Redis Cluster: a shard channel, on the node that owns the topic's keys
SHARDED_PUBLISH_SCRIPT = PUBLISH_SCRIPT.replace("'PUBLISH'", "'SPUBLISH'")


def new_origin() -> bytes:
    """A fresh publisher id: ORIGIN_LEN hex characters, never the same twice in practice."""
    return os.urandom(ORIGIN_LEN // 2).hex().encode()


def tagged(topic: str, cluster: bool) -> str:
    """`topic` as channels and keys hold it: its own hash tag on a cluster."""
    return "{" + topic + "}" if cluster else topic


def channel(prefix: str, topic: str, cluster: bool) -> bytes:
    """The channel of `topic`."""
    return (prefix + tagged(topic, cluster)).encode()


def history_keys(prefix: str, topic: str, cluster: bool) -> list[str]:
    """The history's hash and stream keys of `topic`."""
    base = f"{prefix}h:{tagged(topic, cluster)}"
    return [base + ":m", base + ":s"]


def presence_key(prefix: str, topic: str, cluster: bool) -> str:
    """The hash of `topic`'s members."""
    return f"{prefix}p:{tagged(topic, cluster)}"


def alive_key(prefix: str, worker: str) -> str:
    """The key that exists while `worker` lives."""
    return f"{prefix}alive:{worker}"


class RedisFormat:
    """Channels, bodies and keys of one prefix on one kind of Redis, for one publisher.

    Args:
        prefix: the workers' `prefix` (their `RedisBackplane(prefix=...)`).
        cluster: True on a Redis Cluster: shard channels and hash-tagged keys.
        history: the workers' history options; with a size, publishes are numbered and kept.

    Raises:
        ValueError: a prefix with `{` or `}` on a cluster (it would move the hash tag).
    """

    def __init__(self, prefix: str, cluster: bool, history: HistoryOptions) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
        if cluster and ("{" in prefix or "}" in prefix):
            raise ValueError(f"on a Redis Cluster the prefix cannot hold braces, got {prefix!r}")
        self.prefix = prefix
        self.cluster = cluster
        self.history = history
        #: this publisher's id at the start of every body; never a worker's
        self.origin = new_origin()
        self.origin_len = ORIGIN_LEN
        #: PUBLISH, or SPUBLISH on a cluster (a shard channel lives on its slot's node)
        self.publish_verb = "SPUBLISH" if cluster else "PUBLISH"
        #: the history publish script, with SPUBLISH on a cluster
        self.script = Script(SHARDED_PUBLISH_SCRIPT if cluster else PUBLISH_SCRIPT)

    def channel(self, topic: str) -> bytes:
        """The channel of `topic`."""
        return channel(self.prefix, topic, self.cluster)

    def history_keys(self, topic: str) -> list[str]:
        """The history's hash and stream keys of `topic`."""
        return history_keys(self.prefix, topic, self.cluster)

    def presence_key(self, topic: str) -> str:
        """The hash of `topic`'s members."""
        return presence_key(self.prefix, topic, self.cluster)

    def alive_key(self, worker: str) -> str:
        """The key that exists while `worker` lives."""
        return alive_key(self.prefix, worker)

    def publish(
        self, topic: str, payload: Payload, headers: Header | None
    ) -> tuple[Script | None, tuple[Any, ...]]:
        """What to send for a publish: `(None, command)`, or `(script, keys + args)`.

        Raises:
            TypeError: `topic` is not a string; EncodeError: not JSON.
        """
        _check_topic(topic)
        history = self.history
        if not history.enabled:
            frame = encode_push(topic, payload, headers)
            return None, (self.publish_verb, self.channel(topic), self.origin + frame.encode())
        from ._history import new_epoch

        template = split_push(topic, payload, headers)
        keys = self.history_keys(topic)
        args = (
            template.head,
            template.tail,
            history.size,
            max(1, int(history.ttl * 1000)),
            new_epoch(),
            self.channel(topic),
            self.origin,
        )
        return self.script, (*keys, *args)

    def close(self, topic: str, code: int, reason: str) -> tuple[Any, ...]:
        """The command that closes every subscriber of `topic` on every worker.

        Raises:
            TypeError, ValueError: a topic that is not a string, or a code or reason that
                does not fit a close frame.
        """
        _check_topic(topic)
        return (self.publish_verb, self.channel(topic), close_body(self.origin, code, reason))

    def history_reads(self, topic: str) -> list[tuple[Any, ...]]:
        """The commands `history()` sends, in one pipeline: the epoch, the stream, the time."""
        _check_topic(topic)
        meta, stream = self.history_keys(topic)
        return [("HGET", meta, "e"), ("XRANGE", stream, "-", "+"), ("TIME",)]

    def history_result(self, replies: list[Any], since: object) -> list[Any]:
        """The pushes kept after `since` (an offset, or a client's position), oldest first.

        Raises:
            ValueError: `since` is neither an offset >= 0 nor a position.
        """
        epoch_raw, entries, (seconds, micros) = replies
        epoch = _text(epoch_raw) if epoch_raw is not None else None
        if type(since) is int and since >= 0:
            after = since
        else:
            position = parse_since(since)
            after = -1 if position is None or position[1] != epoch else position[0]
        horizon = int(seconds) * 1000 + int(micros) // 1000 - int(self.history.ttl * 1000)
        pushes: list[Any] = []
        for entry_id, fields in entries or ():
            ms = int(_text(entry_id).split("-", 1)[0])
            values = {_text(k): v for k, v in fields.items()}
            if ms > horizon and int(values["o"]) > after:
                pushes.append(orjson.loads(values["f"]))
        pushes.sort(key=lambda push: push["headers"][OFFSET])
        return pushes

    def presence_result(
        self, raw: Mapping[Any, Any], alive: Iterable[tuple[str, Any]]
    ) -> dict[str, Any]:
        """`{member_id: info}` of the members whose worker lives."""
        live = {worker for worker, flag in alive if flag}
        return {
            _text(member): orjson.loads(info)
            for member, info in raw.items()
            if _text(member).split(".", 1)[0] in live
        }

    @staticmethod
    def workers(raw: Mapping[Any, Any]) -> list[str]:
        """The workers that `raw` members belong to, whose liveness is to be read."""
        return sorted({_text(member).split(".", 1)[0] for member in raw})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_topic(topic: object) -> None:
    if type(topic) is not str:
        raise TypeError(f"topic must be a string, got {type(topic).__name__}")
