"""History, idempotent answers and presence in a real redis-server, without a web server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.envelope import encode_reply
from observable_socket_asgi.pubsub._history import split_push
from observable_socket_asgi.pubsub._idempotency import Idempotency
from observable_socket_asgi.pubsub._redis_stores import (
    RedisHistory,
    RedisIdempotencyStore,
    RedisPresence,
)
from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane
from tests.helpers import MS, TIMEOUT, Conversation, request
from tests.redis_servers import RedisServer, redis_server  # noqa: F401

pytestmark = pytest.mark.redis


async def client(server: RedisServer) -> Any:
    return server.client()


async def until(check: Callable[[], Any]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not await check():  # noqa: ASYNC110 (state held in Redis, no event to wait on)
            await asyncio.sleep(20 * MS)


async def publish(history: RedisHistory, n: int) -> tuple[int, str, str]:
    template = split_push("t", {"n": n}, None)
    return await history.publish("t", template, b"ch", b"0123456789abcdef")


async def test_history_numbers_publishes_and_replays_them(redis_server: RedisServer) -> None:  # noqa: F811
    """Offsets count from 1 in one epoch; a resume gets the missed frames, published too."""
    r = await client(redis_server)
    pubsub = r.pubsub()
    await pubsub.subscribe(b"ch")
    try:
        history = RedisHistory(lambda: r, "x:", size=3, ttl=60)
        published = [await publish(history, n) for n in range(5)]
        assert [p[0] for p in published] == [1, 2, 3, 4, 5]
        epoch = published[0][1]
        assert {p[1] for p in published} == {epoch}
        assert orjson.loads(published[4][2])["headers"] == {"offset": 5, "epoch": epoch}

        got = await history.since("t", (2, epoch))
        assert got.recovered and got.offset == 5
        assert got.frames == tuple(p[2] for p in published[2:])
        assert not (await history.since("t", (1, epoch))).recovered
        assert not (await history.since("t", (2, "other"))).recovered
        assert (await history.since("t", (5, epoch))).recovered
        fresh = await history.since("t", None)
        assert (fresh.recovered, fresh.offset, fresh.epoch) == (False, 5, epoch)

        bodies: list[bytes] = []
        async with asyncio.timeout(TIMEOUT):
            while len(bodies) < 5:
                message = await pubsub.get_message(timeout=TIMEOUT)
                if message is not None and message["type"] == "message":
                    bodies.append(message["data"])
        assert bodies[0] == b"0123456789abcdef1 " + published[0][2].encode()
    finally:
        await pubsub.aclose()
        await r.aclose()


async def test_history_lost_with_redis_starts_a_new_epoch(redis_server: RedisServer) -> None:  # noqa: F811
    """Redis emptied: the old position is not recovered, and numbering starts over in a new
    epoch made by the next publish (the read makes none)."""
    r = await client(redis_server)
    try:
        history = RedisHistory(lambda: r, "x:", size=10, ttl=60)
        _, epoch, _ = await publish(history, 1)
        await r.flushall()
        await r.script_flush()  # a restarted Redis has lost the scripts too
        got = await history.since("t", (1, epoch))
        assert not got.recovered and got.offset == 0 and got.epoch != epoch
        assert got.epoch.startswith("-")  # the empty epoch of a topic without a log
        offset, new_epoch, _ = await publish(history, 2)
        assert offset == 1 and new_epoch not in (epoch, got.epoch)
    finally:
        await r.aclose()


async def test_idempotent_run_once_across_two_workers(redis_server: RedisServer) -> None:  # noqa: F811
    """Two workers sharing Redis: twins wait for the first, and a retry gets its answer."""
    r1, r2 = await client(redis_server), await client(redis_server)
    try:
        a = Idempotency(RedisIdempotencyStore(lambda: r1, "x:"), ttl=60, lease=1.0)
        b = Idempotency(RedisIdempotencyStore(lambda: r2, "x:"), ttl=60, lease=1.0)
        gate = asyncio.Event()
        runs: list[str] = []

        def compute(worker: str) -> Callable[[], Any]:
            async def run() -> str:
                runs.append(worker)
                await gate.wait()
                return encode_reply("u", 200, {}, worker)

            return run

        first = asyncio.create_task(a.run("k", "fp", "u", compute("a")))
        await until(lambda: _true(runs))
        twin = asyncio.create_task(b.run("k", "fp", "u", compute("b")))
        conflict = orjson.loads(await b.run("k", "other", "u", compute("b")))
        assert conflict["status"] == 409
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(first, twin), TIMEOUT)
        retry = await b.run("k", "fp", "u", compute("b"))
        assert answers[0] == answers[1] == retry and runs == ["a"]
    finally:
        await r1.aclose()
        await r2.aclose()


async def test_claim_of_a_dead_worker_lapses(redis_server: RedisServer) -> None:  # noqa: F811
    """A claim nobody renews expires after its lease, and a retry runs the route."""
    r = await client(redis_server)
    try:
        store = RedisIdempotencyStore(lambda: r, "x:")
        assert await store.claim("k", "fp", 50 * MS) is None  # a worker claims, then dies
        idem = Idempotency(store, ttl=60, lease=1.0)

        async def run() -> str:
            return encode_reply("u", 200, {}, "ran")

        answer = await asyncio.wait_for(idem.run("k", "fp", "u", run), TIMEOUT)
        assert orjson.loads(answer)["payload"] == "ran" and idem.runs == 1
    finally:
        await r.aclose()


async def _true(value: Any) -> bool:
    return bool(value)


async def test_presence_across_workers_and_a_dead_worker_expires(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Members of both workers are listed; a worker that stops renewing is dropped."""
    r1, r2 = await client(redis_server), await client(redis_server)
    ttl = 300 * MS
    one = RedisPresence(lambda: r1, "x:", ttl=ttl, worker="aaaa")
    two = RedisPresence(lambda: r2, "x:", ttl=ttl, worker="bbbb")
    try:
        await one.start()
        await two.start()
        await one.join("room", "aaaa.1", {"name": "ada"})
        await two.join("room", "bbbb.1", {"name": "bob"})
        assert await two.members("room") == {"aaaa.1": {"name": "ada"}, "bbbb.1": {"name": "bob"}}
        two.leave("room", "bbbb.1")

        async def only_ada() -> bool:
            return await two.members("room") == {"aaaa.1": {"name": "ada"}}

        await until(only_ada)
        # worker one dies: no more renewals and no goodbye
        assert one._renewer is not None
        one._renewer.cancel()
        one._renewer = None
        one._local.clear()

        async def empty() -> bool:
            return await two.members("room") == {}

        await until(empty)
        assert await r2.hlen("x:p:room") == 0
    finally:
        await one.stop()
        await two.stop()
        await r1.aclose()
        await r2.aclose()


# Two routers in one process, sharing a Redis


def numbered(url: str) -> SocketRouter:
    router = SocketRouter(
        backplane=RedisBackplane(url, ping_interval=1.0, max_backoff=0.5), history_size=100
    )

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        got = await ws.subscribe("t", since=payload)
        return {"payload": [got.recovered, got.offset, got.epoch]}

    return router


async def test_every_worker_delivers_numbered_pushes_once_in_order(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Pushes published on both workers reach a subscriber once each, in offset order."""
    a, b = numbered(redis_server.url), numbered(redis_server.url)
    await a.backplane.start()
    await b.backplane.start()
    conv = Conversation(a)
    try:
        await conv.connect()
        assert (await conv.ask(request("join", None)))["payload"][:2] == [False, 0]
        for n in range(10):
            await (a if n % 2 else b).publish("t", n)
        pushes = [await conv.reply() for _ in range(10)]
        assert [p["headers"]["offset"] for p in pushes] == list(range(1, 11))
        assert sorted(p["payload"] for p in pushes) == list(range(10))
        assert await conv.nothing(100 * MS)
    finally:
        await conv.disconnect()
        await a.backplane.stop()
        await b.backplane.stop()


async def test_publish_while_redis_is_down_stays_local_and_unnumbered(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """No Redis: the push reaches this worker's subscribers without a position, counted."""
    router = numbered(redis_server.url)
    await router.backplane.start()
    conv = Conversation(router)
    try:
        await conv.connect()
        await conv.ask(request("join", None))
        redis_server.kill()
        async with asyncio.timeout(TIMEOUT):
            while router.backplane.connected:  # noqa: ASYNC110 (the listener's state)
                await asyncio.sleep(10 * MS)
        await router.publish("t", "alone", {"kind": "x"})
        push = await conv.reply()
        assert push["payload"] == "alone" and push["headers"] == {"kind": "x"}
        transport = router.backplane.transport
        assert isinstance(transport, RedisBackplane)
        assert transport.dropped == 1
        answer = await conv.ask(request("join", {"offset": 0, "epoch": "e"}))
        assert answer["payload"] == [False, None, None]
    finally:
        await conv.disconnect()
        await router.backplane.stop()
