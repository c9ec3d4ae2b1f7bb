"""Idempotent runs without a server: once per key, twins wait, conflicts, what is stored."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.envelope import encode_error, encode_reply
from observable_socket_asgi.pubsub._idempotency import (
    Idempotency,
    MemoryIdempotencyStore,
    default_identity,
    fingerprint,
    storage_key,
)
from tests.helpers import MS, TIMEOUT, Conversation, request, ws_scope


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counting(status: int = 200) -> tuple[list[int], Any]:
    runs: list[int] = []

    async def compute() -> str:
        runs.append(1)
        await asyncio.sleep(0)
        if status == 200:
            return encode_reply("u1", 200, {}, {"n": len(runs)})
        return encode_error(status, "u1", "busy")

    return runs, compute


async def test_second_request_gets_the_stored_answer() -> None:
    """The route runs once; the retry gets the first answer, byte for byte."""
    idem = Idempotency(MemoryIdempotencyStore(), ttl=60)
    runs, compute = counting()
    first = await idem.run("k", "fp", "u1", compute)
    again = await idem.run("k", "fp", "u1", compute)
    assert first == again and len(runs) == 1 and idem.runs == 1


async def test_concurrent_twins_wait_for_the_first() -> None:
    """Duplicates arriving while the first runs get its answer without running."""
    idem = Idempotency(MemoryIdempotencyStore(), ttl=60)
    gate = asyncio.Event()
    runs: list[int] = []

    async def compute() -> str:
        runs.append(1)
        await gate.wait()
        return encode_reply("u1", 200, {}, "done")

    waiting = [asyncio.create_task(idem.run("k", "fp", "u1", compute)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*waiting), TIMEOUT)
    assert len(set(answers)) == 1 and runs == [1]


async def test_other_payload_is_a_conflict_while_running_and_after() -> None:
    """The same key with another fingerprint is answered 409, before and after it finishes."""
    idem = Idempotency(MemoryIdempotencyStore(), ttl=60)
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return encode_reply("u1", 200, {}, "done")

    first = asyncio.create_task(idem.run("k", "a", "u1", slow))
    await asyncio.sleep(0)
    during = orjson.loads(await idem.run("k", "b", "u1", slow))
    gate.set()
    await first
    after = orjson.loads(await idem.run("k", "b", "u1", slow))
    assert during["status"] == after["status"] == 409
    assert during["uuid"] == "u1"


async def test_cancelled_caller_does_not_cancel_the_run() -> None:
    """The client leaving mid-run leaves the route running; its answer waits for the retry."""
    idem = Idempotency(MemoryIdempotencyStore(), ttl=60)
    gate = asyncio.Event()
    finished: list[int] = []

    async def compute() -> str:
        await gate.wait()
        finished.append(1)
        return encode_reply("u1", 200, {}, "late")

    caller = asyncio.create_task(idem.run("k", "fp", "u1", compute))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()
    retry = await asyncio.wait_for(idem.run("k", "fp", "u1", compute), TIMEOUT)
    assert orjson.loads(retry)["payload"] == "late" and finished == [1]


@pytest.mark.parametrize("status", [429, 503, 504])
async def test_retryable_errors_are_not_stored(status: int) -> None:
    """429, 503 and 504 answers let a retry run the route again."""
    idem = Idempotency(MemoryIdempotencyStore(), ttl=60)
    runs, compute = counting(status)
    await idem.run("k", "fp", "u1", compute)
    await idem.run("k", "fp", "u1", compute)
    assert len(runs) == 2


async def test_other_errors_are_stored() -> None:
    """A 500 is an answer like any other: the retry does not run the route again."""
    idem = Idempotency(MemoryIdempotencyStore(), ttl=60)
    runs, compute = counting(500)
    await idem.run("k", "fp", "u1", compute)
    await idem.run("k", "fp", "u1", compute)
    assert len(runs) == 1


async def test_answers_expire_after_the_ttl() -> None:
    """Past idempotency_ttl the same uuid runs again."""
    clock = Clock()
    idem = Idempotency(MemoryIdempotencyStore(clock=clock), ttl=10)
    runs, compute = counting()
    await idem.run("k", "fp", "u1", compute)
    clock.now = 9.0
    await idem.run("k", "fp", "u1", compute)
    clock.now = 10.5
    await idem.run("k", "fp", "u1", compute)
    assert len(runs) == 2


async def test_store_is_bounded_by_count_and_bytes() -> None:
    """The oldest answers are evicted past max_entries or max_bytes."""
    store = MemoryIdempotencyStore(max_entries=3, max_bytes=1000, clock=Clock())
    for i in range(5):
        await store.finish(f"k{i}", "fp", "x" * 100, 60)
    assert len(store) == 3 and await store.claim("k0", "fp", 1) is None
    await store.finish("big", "fp", "x" * 900, 60)
    assert store.bytes <= 1000 and await store.claim("k3", "fp", 1) is None
    await store.finish("huge", "fp", "x" * 1001, 60)
    assert await store.claim("huge", "fp", 1) is None


def test_fingerprint_ignores_key_order_and_keys_are_distinct() -> None:
    """Payload fingerprints ignore key order; keys differ by identity, route and uuid."""
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    keys = {
        storage_key("u", "r", 1),
        storage_key("u", "r", "1"),
        storage_key("v", "r", 1),
        storage_key("u", "s", 1),
    }
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("ada", "user:ada"),
        (7, "user:7"),
        ({"id": 3}, "user:3"),
        (SimpleNamespace(identity="bob", is_authenticated=True), "user:bob"),
        (SimpleNamespace(identity="bob", is_authenticated=False), None),
        (SimpleNamespace(id=9), "user:9"),
        (None, None),
        (True, None),
        (object(), None),
    ],
)
def test_default_identity_reads_the_scope_user(user: Any, expected: str | None) -> None:
    """The authenticated user in the scope names the key; anything else gives None."""
    ws = SimpleNamespace(scope={} if user is None else {"user": user})
    assert default_identity(ws) == expected


# Through the router, in memory


def orders(**options: Any) -> tuple[SocketRouter, list[Any], asyncio.Event]:
    router = SocketRouter(**options)
    runs: list[Any] = []
    gate = asyncio.Event()
    gate.set()

    @router.route("create", options={"idempotent": True})
    async def create(ws: Any, headers: Any, payload: Any) -> Any:
        runs.append(payload)
        await gate.wait()
        return {"status": 201, "payload": {"n": len(runs)}}

    return router, runs, gate


async def test_retry_on_a_new_connection_of_the_same_user_is_answered_from_the_store() -> None:
    """Keyed by the scope's user: a reconnect's retry gets the first answer."""
    router, runs, _ = orders()
    first = Conversation(router, ws_scope(user="ada"))
    await first.connect()
    answer = await first.ask(request("create", {"item": 1}, uuid="u1"))
    await first.disconnect()
    again = Conversation(router, ws_scope(user="ada"))
    await again.connect()
    assert await again.ask(request("create", {"item": 1}, uuid="u1")) == answer
    other = await again.ask(request("create", {"item": 2}, uuid="u1"))
    assert other["status"] == 409 and other["uuid"] == "u1"
    await again.disconnect()
    assert len(runs) == 1


async def test_another_user_never_gets_the_answer() -> None:
    """The same uuid from another user runs the route for that user."""
    router, runs, _ = orders()
    for user in ("ada", "bob"):
        conv = Conversation(router, ws_scope(user=user))
        await conv.connect()
        assert (await conv.ask(request("create", {}, uuid="u1")))["payload"]["n"] == len(runs)
        await conv.disconnect()
    assert len(runs) == 2


async def test_without_identity_the_guarantee_is_per_connection() -> None:
    """No user in the scope: a retry on the same connection is deduplicated, a new one is not."""
    router, runs, _ = orders()
    for _ in range(2):
        conv = Conversation(router)
        await conv.connect()
        await conv.ask(request("create", {}, uuid="u1"))
        await conv.ask(request("create", {}, uuid="u1"))
        await conv.disconnect()
    assert len(runs) == 2


async def test_identity_is_configurable() -> None:
    """idempotency_identity picks the key: here a header of the handshake."""
    router, runs, _ = orders(idempotency_identity=lambda ws: ws.headers.get("x-device"))
    for _ in range(2):
        conv = Conversation(router, ws_scope(headers=[(b"x-device", b"d1")]))
        await conv.connect()
        await conv.ask(request("create", {}, uuid="u1"))
        await conv.disconnect()
    assert len(runs) == 1


async def test_disconnect_does_not_cancel_the_run_and_twins_wait() -> None:
    """The client leaves mid-run; the run finishes and a concurrent twin and a retry share it."""
    router, runs, gate = orders()
    gate.clear()
    leaving = Conversation(router, ws_scope(user="ada"))
    await leaving.connect()
    await leaving.send(request("create", {}, uuid="u1"))
    await leaving.disconnect()
    twin = Conversation(router, ws_scope(user="ada"))
    await twin.connect()
    await twin.send(request("create", {}, uuid="u1"))
    assert await twin.nothing()
    gate.set()
    answer = await twin.reply()
    assert answer["status"] == 201 and runs == [{}]
    await twin.disconnect()


async def test_timeouts_are_not_stored() -> None:
    """A 504 leaves the key free: the retry runs the route again."""
    router = SocketRouter()
    runs: list[int] = []

    @router.route("slow", options={"idempotent": True, "timeout": 50 * MS})
    async def slow(ws: Any, headers: Any, payload: Any) -> Any:
        runs.append(1)
        if len(runs) == 1:
            await asyncio.Event().wait()
        return {"payload": "done"}

    conv = Conversation(router)
    await conv.connect()
    assert (await conv.ask(request("slow", None, uuid="u")))["status"] == 504
    assert (await conv.ask(request("slow", None, uuid="u")))["payload"] == "done"
    assert len(runs) == 2
    await conv.disconnect()


def test_idempotent_option_must_be_a_bool() -> None:
    """A misspelt option value fails at registration, naming the route."""
    router = SocketRouter()
    with pytest.raises(TypeError, match="'create'"):
        router.add_route("create", lambda ws, h, p: {}, {"idempotent": "yes"})  # type: ignore[arg-type]
