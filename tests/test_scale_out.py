"""Scale-out users can trust: per-publisher order across workers, closing subscribers on
every worker, and the Redis transport on a real Redis Cluster and through a Sentinel
failover.

Real uvicorn workers (examples.chat) where the question is what a client sees; in-process
routers over the real Redis topologies where the question is what the transport does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from observable_socket_asgi import AsyncPublisher, Publisher, SocketRouter, Status
from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane
from tests.helpers import MS, TIMEOUT, Conversation, request
from tests.redis_servers import RedisServer
from tests.redis_topologies import RedisCluster, RedisSentinels, client
from tests.test_redis_backplane import Worker, ask, open_ws, wait_connected

pytestmark = pytest.mark.redis


def rooms(url: str, **options: Any) -> SocketRouter:
    """A router on the Redis transport whose `join` subscribes to the topic it is given."""
    transport = RedisBackplane(url, ping_interval=1.0, max_backoff=0.5, publish_timeout=TIMEOUT)
    router = SocketRouter(backplane=transport, **options)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe(payload)
        return {"status": Status.OK}

    return router


async def started(*routers: SocketRouter) -> None:
    for router in routers:
        await router.backplane.start()


async def stopped(*routers: SocketRouter) -> None:
    for router in routers:
        await router.backplane.stop()


# Order


@pytest.fixture
def two_workers(redis_server: RedisServer) -> Any:
    workers: list[Worker] = []
    try:
        for _ in range(2):
            workers.append(Worker(redis_server.url))
        yield workers
    finally:
        for worker in workers:
            worker.stop()


async def test_unawaited_says_on_one_worker_reach_another_in_order(
    two_workers: list[Worker],
) -> None:
    """200 unawaited `room/say` from one client on worker B reach a subscriber on worker A
    in the order they were sent (a pool of connections to Redis reorders them)."""
    a, b = await open_ws(two_workers[0]), await open_ws(two_workers[1])
    try:
        await wait_connected(a, True)
        await wait_connected(b, True)
        await ask(a, "room/join", {"room": "order", "name": "ada"}, 1)
        for n in range(200):
            frame = {"uuid": 100 + n, "route": "room/say", "headers": {}}
            frame["payload"] = {"room": "order", "text": str(n), "name": "bob"}
            await b.send(orjson.dumps(frame).decode())
        got: list[int] = []
        async with asyncio.timeout(TIMEOUT * 4):
            while len(got) < 200:
                push = orjson.loads(await a.recv())
                if push.get("route") == "room:order" and "text" in push["payload"]:
                    got.append(int(push["payload"]["text"]))
        assert got == list(range(200))
    finally:
        await a.close()
        await b.close()


async def test_concurrent_publishes_keep_their_order_with_history(
    redis_server: RedisServer,
) -> None:
    """With history on, concurrent publishes on one router are numbered and delivered on
    another router in call order."""
    a, b = rooms(redis_server.url, history_size=500), rooms(redis_server.url, history_size=500)
    await started(a, b)
    try:
        conv = Conversation(a)
        await conv.connect()
        await conv.ask(request("join", "t"))
        await asyncio.gather(*(b.publish("t", n) for n in range(300)))
        pushes = [await conv.reply() for _ in range(300)]
        assert [p["payload"] for p in pushes] == list(range(300))
        assert [p["headers"]["offset"] for p in pushes] == list(range(1, 301))
        await conv.disconnect()
    finally:
        await stopped(a, b)


# Closing subscribers on every worker


async def test_close_subscribers_reaches_every_worker(redis_server: RedisServer) -> None:
    """`router.close_subscribers` closes its own subscribers and the other router's with
    the code and reason, after the pushes published before it; others stay open."""
    a, b = rooms(redis_server.url), rooms(redis_server.url)
    await started(a, b)
    try:
        on_a, on_b, other = Conversation(a), Conversation(b), Conversation(b)
        for conv, topic in ((on_a, "user:42"), (on_b, "user:42"), (other, "user:7")):
            await conv.connect()
            await conv.ask(request("join", topic))
        await a.publish("user:42", "goodbye")
        assert await a.close_subscribers("user:42", 4001, "signed out") == 1
        for conv in (on_a, on_b):
            assert (await conv.reply())["payload"] == "goodbye"
            closing = await conv.output()
            assert closing == {"type": "websocket.close", "code": 4001, "reason": "signed out"}
        assert await other.nothing()
        with pytest.raises(ValueError, match="close code"):
            await a.close_subscribers("user:42", 1005)
        await other.disconnect()
    finally:
        await stopped(a, b)


async def test_a_publisher_signs_a_user_out_of_every_real_worker(
    redis_server: RedisServer, two_workers: list[Worker]
) -> None:
    """`Publisher.close_subscribers` from outside closes the user's sockets on both uvicorn
    workers with its code and reason."""
    sockets = [await open_ws(worker) for worker in two_workers]
    try:
        for n, ws in enumerate(sockets):
            await wait_connected(ws, True)
            await ask(ws, "room/join", {"room": "lobby", "name": "ada"}, n + 1)
        with Publisher(redis_server.url) as pub:
            await asyncio.to_thread(pub.close_subscribers, "room:lobby", 4003, "signed out")
        for ws in sockets:
            async with asyncio.timeout(TIMEOUT):
                await ws.wait_closed()
            assert ws.close_code == 4003 and ws.close_reason == "signed out"
    finally:
        for ws in sockets:
            await ws.close()


# Redis Cluster


async def test_the_transport_on_a_cluster_shares_pushes_history_and_presence(
    redis_cluster: RedisCluster,
) -> None:
    """Two routers on a three-master cluster: pushes of topics on every node cross with
    their positions, from a router and from a Publisher, in order."""
    url = redis_cluster.url
    a, b = rooms(url, history_size=10), rooms(url, history_size=10)
    await started(a, b)
    try:
        assert a.backplane.connected and b.backplane.connected
        topics = [f"room:{n}" for n in range(6)]  # their slots fall on all three masters
        conv = Conversation(a)
        await conv.connect()
        for topic in topics:
            await conv.ask(request("join", topic))
        for topic in topics:
            await b.publish(topic, "from b")
        async with AsyncPublisher(url, history_size=10) as pub:
            for topic in topics:
                await pub.publish(topic, "from outside")
        got: dict[str, list[Any]] = {topic: [] for topic in topics}
        for _ in range(2 * len(topics)):
            push = await conv.reply()
            got[push["route"]].append((push["payload"], push["headers"]["offset"]))
        for topic in topics:
            assert got[topic] == [("from b", 1), ("from outside", 2)], topic
        for port in redis_cluster.ports:
            assert client(port).keys("observable_socket:h:{room:*}:s"), port
        await conv.disconnect()
    finally:
        await stopped(a, b)


async def test_presence_on_a_cluster(redis_cluster: RedisCluster) -> None:
    """Members joined on a router over a cluster are listed by every router and by a
    Publisher: the members' hash is tagged by topic, the workers' keys read one by one."""
    a, b = rooms(redis_cluster.url), rooms(redis_cluster.url)

    @a.route("enter")
    async def enter(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe(payload["topic"], presence=payload["info"])
        return {"status": Status.OK}

    await started(a, b)
    try:
        conv = Conversation(a)
        await conv.connect()
        for n in range(3):
            await conv.ask(request("enter", {"topic": f"room:{n}", "info": {"n": n}}))
        for n in range(3):
            assert list((await b.presence(f"room:{n}")).values()) == [{"n": n}]
        async with AsyncPublisher(redis_cluster.url) as pub:
            assert list((await pub.presence("room:2")).values()) == [{"n": 2}]
        await conv.disconnect()
    finally:
        await stopped(a, b)


async def test_a_subscription_follows_its_slot_to_another_node(
    redis_cluster: RedisCluster,
) -> None:
    """When a topic's slot moves to another master, Redis drops the worker's shard
    subscription; the worker subscribes again on the new owner and pushes flow again."""
    from redis.crc import key_slot

    a, b = rooms(redis_cluster.url, history_size=10), rooms(redis_cluster.url, history_size=10)
    await started(a, b)
    try:
        conv = Conversation(a)
        await conv.connect()
        await conv.ask(request("join", "room:move"))
        await b.publish("room:move", "before")
        assert (await conv.reply())["payload"] == "before"
        slot = key_slot(b"{room:move}")
        source = redis_cluster.owner(slot)
        target = next(port for port in redis_cluster.ports if port != source)
        await asyncio.to_thread(redis_cluster.move_slot, slot, target)
        assert redis_cluster.owner(slot) == target
        async with asyncio.timeout(10 * TIMEOUT):
            while True:  # pushes published while the move is under way may be missed
                await b.publish("room:move", "after")
                if not await conv.nothing(100 * MS):
                    break
        push = await conv.reply()
        assert push["payload"] == "after" and push["headers"]["offset"] >= 2
        await conv.disconnect()
    finally:
        await stopped(a, b)


# Redis Sentinel


async def test_the_transport_follows_a_sentinel_failover(
    redis_sentinels: RedisSentinels, caplog: pytest.LogCaptureFixture
) -> None:
    """The master is killed: pushes flow again once the sentinels promote the replica, and
    what was published meanwhile is counted and its outage logged once."""
    caplog.set_level(logging.WARNING, logger="observable_socket_asgi.redis")
    a, b = rooms(redis_sentinels.url), rooms(redis_sentinels.url)
    await started(a, b)
    try:
        conv = Conversation(a)
        await conv.connect()
        await conv.ask(request("join", "news"))
        await b.publish("news", "before")
        assert (await conv.reply())["payload"] == "before"
        transport = b.backplane.transport
        assert isinstance(transport, RedisBackplane)
        await asyncio.to_thread(redis_sentinels.kill_master)
        async with asyncio.timeout(30 * TIMEOUT):
            while transport.connected:  # noqa: ASYNC110 - polled state, bounded
                await asyncio.sleep(10 * MS)
        await b.publish("news", "lost")
        async with asyncio.timeout(30 * TIMEOUT):
            while not (transport.connected and a.backplane.connected):  # noqa: ASYNC110
                await asyncio.sleep(20 * MS)
        await b.publish("news", "after")
        assert (await conv.reply())["payload"] == "after"
        assert transport.dropped >= 1
        started_lines = [r for r in caplog.records if "is unreachable" in r.getMessage()]
        recovered = [r for r in caplog.records if "reconnected after" in r.getMessage()]
        assert len([r for r in started_lines if r.name.endswith("redis")]) <= 2  # one per router
        assert recovered
        await conv.disconnect()
    finally:
        await stopped(a, b)


def test_the_router_takes_sentinel_and_cluster_urls() -> None:
    """`backplane=` accepts the Sentinel and Cluster URL forms, building the Redis transport."""
    sentinel = SocketRouter(backplane="redis+sentinel://127.0.0.1:1,127.0.0.1:2/0/svc")
    cluster = SocketRouter(backplane="redis+cluster://127.0.0.1:1")
    for router, kind in ((sentinel, "sentinel"), (cluster, "cluster")):
        transport = router.backplane.transport
        assert isinstance(transport, RedisBackplane) and transport.target.kind == kind
    with pytest.raises(ValueError, match="braces"):
        RedisBackplane("redis+cluster://127.0.0.1:1", prefix="app:{x}:")


async def test_in_memory_concurrent_publishes_keep_their_order() -> None:
    """On the in-memory backplane, with history on and off, concurrent publishes reach a
    subscriber in call order."""
    for history_size in (0, 500):
        router = SocketRouter(history_size=history_size)

        @router.route("join")
        async def join(ws: Any, headers: Any, payload: Any) -> Any:
            await ws.subscribe(payload)
            return {"status": Status.OK}

        conv = Conversation(router)
        await conv.connect()
        await conv.ask(request("join", "t"))
        await asyncio.gather(*(router.publish("t", n) for n in range(300)))
        assert [(await conv.reply())["payload"] for _ in range(300)] == list(range(300))
        await conv.disconnect()
