"""Idempotent routes: one run per (identity, route, uuid), its answer kept for retries.

Rules of an idempotent request (this module alone applies them):

    The key is the route, the request's uuid and an identity from the handshake (by default
    the authenticated user `access_logic` put in `scope["user"]`; without one, a token of the
    connection, so the guarantee is then per connection). One user never sees another's
    answer because the identity is part of the key.

    The first request with a key claims it and runs in a task of its own that the client's
    disconnect does not cancel: its answer is stored for `ttl` seconds and waits for the
    retry. A duplicate that arrives while it runs waits for it and gets the same answer (on
    this worker through the task, on another through the store). A duplicate whose payload
    differs is answered 409. Answers a retry could change (429, 503, 504) are not stored.

    A claim held in a shared store (Redis) is a lease, renewed while the handler runs, so the
    claim of a worker that dies lapses within `lease` seconds and a retry runs the route.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .._concurrency import raise_lost_cancel
from ..envelope import encode_error, exact_json
from ..status import Status
from ..types import Payload, Uuid

__all__ = [
    "NOT_STORED",
    "Claim",
    "Idempotency",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "default_identity",
    "fingerprint",
    "storage_key",
]

logger = logging.getLogger("observable_socket_asgi.idempotency")

#: statuses a retry could change: never stored, so the retry runs the route again
NOT_STORED = frozenset(
    {Status.TOO_MANY_REQUESTS, Status.SERVICE_UNAVAILABLE, Status.GATEWAY_TIMEOUT}
)

# where the per-connection identity token lives (the ASGI scope is per connection)
_CONNECTION_TOKEN = "observable_socket.connection_token"


@dataclass(frozen=True, slots=True)
class Claim:
    """What a store holds for a key someone else claimed.

    Attributes:
        fingerprint: the payload fingerprint of the request that claimed it.
        frame: its stored answer, or None while it still runs (on another worker).
    """

    fingerprint: str
    frame: str | None


class IdempotencyStore:
    """Where answers are kept; the in-memory store and the Redis one share this shape."""

    async def claim(self, key: str, fp: str, lease: float) -> Claim | None:
        """Claim `key` for a run; None when claimed, else what holds it."""
        raise NotImplementedError

    async def finish(self, key: str, fp: str, frame: str | None, ttl: float) -> None:
        """Store the answer for `ttl` seconds, or (frame None) release the claim."""
        raise NotImplementedError

    async def renew(self, key: str, fp: str, lease: float) -> None:
        """Keep a claim alive `lease` seconds more while its handler runs."""


def fingerprint(payload: Payload) -> str:
    """A digest of a request's payload, key order ignored: 32 hex characters."""
    data = exact_json(payload, sort_keys=True)  # integers past 64 bits too
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def storage_key(identity: str, route: str, uuid: Uuid) -> str:
    """The store key of one request: fixed length, whatever the identity and uuid hold."""
    data = orjson.dumps([identity, route, uuid])
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def default_identity(ws: Any) -> str | None:
    """The authenticated user in `ws.scope["user"]` as a string, or None.

    Reads a string or integer user, Starlette's `BaseUser` (`identity`, and None when it is
    not authenticated), a mapping's `"id"`, or an `id` attribute. Anything else is None: the
    guarantee then holds per connection.
    """
    user = ws.scope.get("user")
    if user is None or isinstance(user, bool):
        return None
    if isinstance(user, str | int):
        return f"user:{user}"
    if getattr(user, "is_authenticated", True) is False:
        return None
    for value in (getattr(user, "identity", None), getattr(user, "id", None)):
        if isinstance(value, str | int) and not isinstance(value, bool):
            return f"user:{value}"
    if isinstance(user, dict):
        value = user.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return f"user:{value}"
    return None


def connection_identity(ws: Any) -> str:
    """A token unique to this connection, kept in its scope."""
    scope = ws.scope
    token = scope.get(_CONNECTION_TOKEN)
    if token is None:
        token = scope[_CONNECTION_TOKEN] = "connection:" + secrets.token_hex(12)
    return str(token)


class MemoryIdempotencyStore(IdempotencyStore):
    """Answers kept in this process, bounded by count and characters, oldest evicted first.

    Args:
        max_entries: answers kept at most.
        max_bytes: characters of answers kept at most; a larger answer is not stored.
        clock: seconds, monotonic; injectable for tests.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise ValueError(f"idempotency_max_entries must be >= 1, got {max_entries!r}")
        if type(max_bytes) is not int or max_bytes < 1:
            raise ValueError(f"idempotency_max_bytes must be >= 1, got {max_bytes!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # key -> (fingerprint, frame, expires at); insertion order is age order
        self._answers: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        # key -> fingerprint of the run in progress (this process's, so no lease is needed)
        self._claims: dict[str, str] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._answers)

    async def claim(self, key: str, fp: str, lease: float) -> Claim | None:
        running = self._claims.get(key)
        if running is not None:
            return Claim(running, None)
        entry = self._answers.get(key)
        if entry is not None:
            if entry[2] > self._now():
                return Claim(entry[0], entry[1])
            self._drop(key)
        self._claims[key] = fp
        return None

    async def finish(self, key: str, fp: str, frame: str | None, ttl: float) -> None:
        if self._claims.get(key) == fp:
            del self._claims[key]
        if frame is None:
            return
        if len(frame) > self.max_bytes:
            logger.warning(
                "answer of %d characters not kept: over idempotency_max_bytes", len(frame)
            )
            return
        now = self._now()
        self._drop(key)
        self._answers[key] = (fp, frame, now + ttl)
        self.bytes += len(frame)
        answers = self._answers
        while answers and (len(answers) > self.max_entries or self.bytes > self.max_bytes):
            self._drop(next(iter(answers)))
        # expired answers at the front go too (all share one ttl, so age order is expiry order)
        while answers:
            oldest = next(iter(answers))
            if answers[oldest][2] > now:
                break
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        entry = self._answers.pop(key, None)
        if entry is not None:
            self.bytes -= len(entry[1])

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()


class Idempotency:
    """Runs idempotent requests once per key, in tasks that outlive their connection.

    Args:
        store: where answers are kept (in memory, or Redis for every worker).
        ttl: seconds an answer is kept.
        lease: seconds a claim in a shared store outlives a worker that stopped renewing it.
    """

    def __init__(self, store: IdempotencyStore, ttl: float, lease: float = 10.0) -> None:
        if not (isinstance(ttl, int | float) and ttl > 0):
            raise ValueError(f"idempotency_ttl must be a positive number of seconds, got {ttl!r}")
        self.store = store
        self.ttl = ttl
        self.lease = lease
        # (key, fingerprint) -> the task resolving it: twins on this worker await it
        self._running: dict[tuple[str, str], asyncio.Task[str]] = {}
        #: how many times a route actually ran (not answered from the store)
        self.runs = 0

    # Public API

    async def run(
        self, key: str, fp: str, uuid: Uuid, compute: Callable[[], Awaitable[str]]
    ) -> str:
        """The answer frame for a request: stored, awaited from a running twin, or computed.

        Cancelling this call (the client left) does not cancel the run: its answer is stored.
        """
        # Twins share one task; a request with another payload resolves on its own and the
        # store, which knows who claimed the key first, answers it 409.
        task = self._running.get((key, fp))
        if task is None:
            task = asyncio.get_running_loop().create_task(self._resolve(key, fp, uuid, compute))
            self._running[key, fp] = task
            task.add_done_callback(lambda _: self._forget((key, fp), task))
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel the runs still going (server shutdown) and wait for them."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Private methods

    def _forget(self, key: tuple[str, str], task: asyncio.Task[str]) -> None:
        if self._running.get(key) is task:
            del self._running[key]

    async def _resolve(
        self, key: str, fp: str, uuid: Uuid, compute: Callable[[], Awaitable[str]]
    ) -> str:
        """Claim, wait for a twin on another worker, or run; store the answer.

        Nobody may be left awaiting this task (its client left): it logs its own failures,
        and a store failure still returns the computed answer.
        """
        delay = 0.01
        while True:
            try:
                held = await self.store.claim(key, fp, self.lease)
            except Exception as exc:
                raise_lost_cancel(exc)  # shut down while the store answered: `close()` awaits
                logger.exception("idempotency store unreachable: running the route unguarded")
                return await compute()
            raise_lost_cancel()
            if held is None:
                break
            if held.fingerprint != fp:
                return _conflict(uuid)
            if held.frame is not None:
                return held.frame
            # running on another worker: wait for its answer, or for its lease to lapse
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        self.runs += 1
        renewer = asyncio.get_running_loop().create_task(self._renew(key, fp))
        try:
            frame = await compute()
        except BaseException:
            renewer.cancel()
            await self._finish(key, fp, None)
            raise
        renewer.cancel()
        await self._finish(key, fp, None if _status(frame) in NOT_STORED else frame)
        return frame

    async def _renew(self, key: str, fp: str) -> None:
        """Renew the claim while the route runs; cancelled when it is done."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.store.renew(key, fp, self.lease)
            except Exception as exc:
                raise_lost_cancel(exc)  # a cancel the store lost would leave this renewing on
                logger.warning("could not renew the claim of an idempotent request: %r", exc)
            raise_lost_cancel()

    async def _finish(self, key: str, fp: str, frame: str | None) -> None:
        try:
            await self.store.finish(key, fp, frame, self.ttl)
        except Exception:
            logger.exception("could not store the answer of an idempotent request")


def _status(frame: str) -> int:
    status = orjson.loads(frame).get("status")
    return status if type(status) is int else 200


def _conflict(uuid: Uuid) -> str:
    return encode_error(
        Status.CONFLICT, uuid, "this uuid was already used on this route with another payload"
    )
