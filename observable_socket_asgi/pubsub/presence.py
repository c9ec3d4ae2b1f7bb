"""Presence: who is subscribed to a topic, with the JSON info each member gave.

Rules of a member (this module holds the in-process store; `_redis_stores` the shared one):

    `ws.subscribe(topic, presence=info)` adds the connection to the topic's members under a
    member id unique to the connection (`<worker>.<n>`), with `info` (any JSON value, at
    most `max_info_bytes` encoded). The member leaves when the connection unsubscribes or
    disconnects. `router.presence(topic)` returns `{member_id: info}` across every worker
    sharing the backplane.

    A worker that dies cannot say goodbye: in Redis each worker keeps a liveness key that
    expires `ttl` seconds after its last renewal (every `ttl / 3`), and the members of a
    worker whose key is gone are left out of every answer and deleted. So a killed worker's
    members are gone within `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Coroutine
from typing import Any

import orjson

from ..errors import EncodeError, PresenceInfoTooLarge

__all__ = ["NO_PRESENCE", "MemoryPresence", "Presence", "check_info", "member_id"]

logger = logging.getLogger("observable_socket_asgi.presence")

#: `subscribe(..., presence=...)` left out: the connection is not a member
NO_PRESENCE: Any = object()

# where a connection's member id lives (the ASGI scope is per connection)
_MEMBER = "observable_socket.member"

#: this process's id: a member id starts with it, so a dead worker's members are found
WORKER_ID = os.urandom(8).hex()
_numbers = itertools.count(1)


def member_id(ws: Any) -> str:
    """The member id of a connection: `<worker>.<n>`, the same for all its topics."""
    scope = ws.scope
    member = scope.get(_MEMBER)
    if member is None:
        member = scope[_MEMBER] = f"{WORKER_ID}.{next(_numbers)}"
    return str(member)


def check_info(info: Any, max_bytes: int) -> bytes:
    """Encode a member's info, refusing what is not JSON or too large.

    Raises:
        PresenceInfoTooLarge: over `max_bytes` encoded (a `BadRequest`, status 400, and a
            `ValueError`).
        EncodeError: not JSON (a TypeError).
    """
    try:
        data = orjson.dumps(info)
    except TypeError as exc:
        raise EncodeError(f"presence info is not JSON: {exc}") from None
    if len(data) > max_bytes:
        raise PresenceInfoTooLarge(
            f"presence info is {len(data)} bytes encoded, over presence_max_info_bytes "
            f"({max_bytes})"
        )
    return data


class Presence:
    """Members of topics in this process; the base of the Redis store.

    Args:
        ttl: seconds within which a dead worker's members disappear (shared stores only).
        max_info_bytes: the largest encoded info a member may carry.
    """

    def __init__(self, ttl: float = 15.0, max_info_bytes: int = 4096) -> None:
        if not (isinstance(ttl, int | float) and ttl > 0):
            raise ValueError(f"presence_ttl must be a positive number of seconds, got {ttl!r}")
        if type(max_info_bytes) is not int or max_info_bytes < 2:
            raise ValueError(f"presence_max_info_bytes must be >= 2, got {max_info_bytes!r}")
        self.ttl = ttl
        self.max_info_bytes = max_info_bytes
        # topic -> member id -> encoded info, for the members of this worker
        self._local: dict[str, dict[str, bytes]] = {}
        # leaves started from sync close callbacks, kept referenced until done
        self._chores: set[asyncio.Task[None]] = set()

    # Public API

    async def join(self, topic: str, member: str, info: Any) -> None:
        """Add `member` to `topic` with `info` (replacing its info if already there).

        Raises:
            PresenceInfoTooLarge: `info` is too large; EncodeError: it is not JSON.
        """
        data = check_info(info, self.max_info_bytes)
        self._local.setdefault(topic, {})[member] = data
        await self._remote_join(topic, member, data)

    def leave(self, topic: str, member: str) -> None:
        """Remove `member` from `topic` (sync: it runs from close callbacks)."""
        members = self._local.get(topic)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self._local[topic]
        self._chore(self._remote_leave(topic, member))

    async def forget(self, topic: str, member: str) -> None:
        """Remove `member` from the shared store, whatever this worker thinks; logs failures."""
        try:
            await self._remote_leave(topic, member)
        except Exception as exc:
            logger.error("presence leave failed: %r", exc)

    def has(self, topic: str, member: str) -> bool:
        """True if `member` of this worker is in `topic`."""
        return member in self._local.get(topic, ())

    def info(self, topic: str, member: str) -> Any:
        """The info of `member` of this worker in `topic`, or None."""
        data = self._local.get(topic, {}).get(member)
        return None if data is None else orjson.loads(data)

    async def members(self, topic: str) -> dict[str, Any]:
        """`{member_id: info}` of `topic` on every worker sharing this store."""
        return {m: orjson.loads(d) for m, d in self._local.get(topic, {}).items()}

    async def start(self) -> None:
        """Start renewing this worker's liveness (shared stores)."""

    async def stop(self) -> None:
        """Stop, after the pending leaves are done."""
        if self._chores:
            await asyncio.gather(*self._chores, return_exceptions=True)

    # Hooks for shared stores

    async def _remote_join(self, topic: str, member: str, data: bytes) -> None:
        pass

    async def _remote_leave(self, topic: str, member: str) -> None:
        pass

    # Private methods

    def _chore(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._chores.add(task)
        task.add_done_callback(self._chore_done)

    def _chore_done(self, task: asyncio.Task[None]) -> None:
        self._chores.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("presence leave failed: %r", task.exception())


class MemoryPresence(Presence):
    """Presence within one process: the default, with the in-memory backplane."""
