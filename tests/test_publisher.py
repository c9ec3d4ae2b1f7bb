"""Publishing from outside a router: the format on Redis, order, the CLI, redis-cli alone.

Pure tests of the format and the close message first; then a real redis-server with
in-process routers on the Redis backplane; then real uvicorn workers (examples.chat) fed by
a `Publisher`, by `observable-socket publish`, and by `redis-cli` with nothing else.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from observable_socket_asgi import AsyncPublisher, Publisher, SocketRouter, Status
from observable_socket_asgi.options import HistoryOptions
from observable_socket_asgi.pubsub._control import (
    check_close,
    close_body,
    close_each,
    parse_close,
)
from observable_socket_asgi.pubsub._redis_urls import parse
from observable_socket_asgi.pubsub._wire import RedisFormat
from observable_socket_asgi.pubsub.publisher import PublishFailed
from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane
from tests.helpers import MS, PROCESS_TIMEOUT, TIMEOUT, Conversation, pause, request
from tests.redis_servers import RedisServer
from tests.redis_topologies import RedisCluster, RedisSentinels, client
from tests.test_redis_backplane import Worker, ask, next_push, open_ws, wait_connected

pytestmark = pytest.mark.redis

PREFIX = "observable_socket:"


# The format, with no Redis


def test_channels_and_keys_are_the_workers() -> None:
    """A publisher's channel and history keys are the ones a worker subscribes to and reads."""
    from observable_socket_asgi.pubsub._redis_stores import RedisHistory

    fmt = RedisFormat(PREFIX, False, HistoryOptions())
    worker = RedisBackplane("redis://127.0.0.1:1", prefix=PREFIX)
    assert fmt.channel("room:lobby") == worker._channel("room:lobby")
    history = RedisHistory(lambda: None, PREFIX, 10, 300.0)
    assert fmt.history_keys("room:lobby") == history._keys("room:lobby")
    assert len(fmt.origin) == 16


def test_on_a_cluster_a_topic_is_one_hash_slot() -> None:
    """On a cluster the channel and every key of a topic share one hash tag: the topic."""
    fmt = RedisFormat(PREFIX, True, HistoryOptions(size=5))
    assert fmt.channel("room:lobby") == b"observable_socket:{room:lobby}"
    assert fmt.history_keys("room:lobby") == [
        "observable_socket:h:{room:lobby}:m",
        "observable_socket:h:{room:lobby}:s",
    ]
    assert fmt.presence_key("room:lobby") == "observable_socket:p:{room:lobby}"
    assert fmt.publish_verb == "SPUBLISH" and "'SPUBLISH'" in fmt.script.text
    with pytest.raises(ValueError, match="braces"):
        RedisFormat("app:{x}:", True, HistoryOptions())


def test_a_publish_without_history_is_origin_then_frame() -> None:
    """Without history a publish is one PUBLISH of the origin followed by the push frame."""
    fmt = RedisFormat(PREFIX, False, HistoryOptions())
    script, command = fmt.publish("news", {"n": 1}, {"k": "v"})
    assert script is None
    verb, channel, body = command
    assert (verb, channel) == ("PUBLISH", b"observable_socket:news")
    assert body[:16] == fmt.origin
    push = orjson.loads(body[16:])
    assert push["route"] == "news" and push["payload"] == {"n": 1}
    assert push["headers"] == {"k": "v"} and push["status"] == 200
    with pytest.raises(TypeError, match="topic must be a string"):
        fmt.publish(b"news", 1, None)  # type: ignore[arg-type]


def test_close_message_round_trip_and_limits() -> None:
    """A close message reads back as its code and reason; what a close frame cannot carry
    is refused when sent and ignored when heard."""
    origin = b"0123456789abcdef"
    body = close_body(origin, 1008, "signed out")
    assert body == b"0123456789abcdef!close 1008 signed out"
    assert parse_close(body, 16) == (1008, "signed out")
    assert parse_close(close_body(origin, 4000, ""), 16) == (4000, "")
    assert parse_close(origin + b'{"uuid":1}', 16) is None
    assert parse_close(origin + b"!close 1005 x", 16) is None
    assert parse_close(origin + b"!close abc x", 16) is None
    for code in (999, 1004, 1005, 1006, 1015, 2999, 5000):
        with pytest.raises(ValueError, match="close code"):
            check_close(code, "")
    with pytest.raises(ValueError, match="123 bytes"):
        check_close(1000, "é" * 62)
    assert check_close(1000, "é" * 61) == ("é" * 61).encode()
    with pytest.raises(TypeError):
        check_close(True, "")


async def test_close_each_closes_all_and_survives_a_failure() -> None:
    """The worker side closes every subscriber with the code and reason, even if one fails."""
    closed: list[tuple[int, str]] = []

    class Sub:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        async def close(self, code: int = 1000, reason: str = "") -> None:
            if self.fail:
                raise RuntimeError("boom")
            closed.append((code, reason))

    assert await close_each([Sub(False), Sub(True), Sub(False)], 1008, "bye") == 3
    assert closed == [(1008, "bye"), (1008, "bye")]


def test_urls() -> None:
    """Single, Sentinel and Cluster URLs in python-socketio's form; malformed ones refused."""
    assert parse("redis://h:6379/1").kind == "single"
    assert parse("unix:///tmp/r.sock?db=0").kind == "single"
    sentinel = parse("redis+sentinel://:pw@s1:26379,s2:26380/2/cache")
    assert sentinel.kind == "sentinel" and sentinel.nodes == (("s1", 26379), ("s2", 26380))
    assert (sentinel.db, sentinel.service, sentinel.password) == (2, "cache", "pw")
    assert parse("redis+sentinel://s1:26379").service == "mymaster"
    cluster = parse("redis+cluster://user:pw@n1:7000,n2:7001")
    assert cluster.cluster and cluster.nodes == (("n1", 7000), ("n2", 7001))
    assert (cluster.username, cluster.password) == ("user", "pw")
    assert "pw" not in repr(cluster)
    for bad in ("redis+cluster://", "redis+sentinel://host", "redis+cluster://n1:7000/3"):
        with pytest.raises(ValueError):
            parse(bad)


# A real redis-server


def rooms(url: str, **options: Any) -> SocketRouter:
    """A router on the Redis backplane whose `join` subscribes (with presence if given)."""
    router = SocketRouter(backplane=RedisBackplane(url, ping_interval=1.0), **options)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        if "presence" in payload:
            await ws.subscribe(payload["topic"], presence=payload["presence"])
        else:
            await ws.subscribe(payload["topic"])
        return {"status": Status.OK}

    return router


async def test_publisher_reaches_a_router_and_shares_its_history(
    redis_server: RedisServer,
) -> None:
    """A sync Publisher's pushes reach a router's subscriber numbered by the same history
    as the router's own, and `history()` reads them back."""
    router = rooms(redis_server.url, history_size=10)
    await router.backplane.start()
    try:
        conv = Conversation(router)
        await conv.connect()
        await conv.ask(request("join", {"topic": "room:lobby"}))
        with Publisher(redis_server.url, history_size=10) as pub:
            await asyncio.to_thread(pub.publish, "room:lobby", {"text": "one"})
            await router.publish("room:lobby", {"text": "two"})
            await asyncio.to_thread(pub.publish, "room:lobby", {"text": "three"})
            got = [await conv.reply() for _ in range(3)]
            assert [p["payload"]["text"] for p in got] == ["one", "two", "three"]
            assert [p["headers"]["offset"] for p in got] == [1, 2, 3]
            kept = await asyncio.to_thread(pub.history, "room:lobby", 1)
            assert [p["payload"]["text"] for p in kept] == ["two", "three"]
            position = {"offset": 2, "epoch": got[0]["headers"]["epoch"]}
            kept = await asyncio.to_thread(pub.history, "room:lobby", position)
            assert [p["payload"]["text"] for p in kept] == ["three"]
            stale = await asyncio.to_thread(pub.history, "room:lobby", {"offset": 2, "epoch": "x"})
            assert len(stale) == 3
        await conv.disconnect()
    finally:
        await router.backplane.stop()


async def test_presence_is_read_across_workers(redis_server: RedisServer) -> None:
    """`presence()` lists the members a router's connections joined with."""
    router = rooms(redis_server.url)
    await router.backplane.start()
    try:
        conv = Conversation(router)
        await conv.connect()
        await conv.ask(request("join", {"topic": "t", "presence": {"name": "ada"}}))
        async with AsyncPublisher(redis_server.url) as pub:
            members = await pub.presence("t")
            assert list(members.values()) == [{"name": "ada"}]
            assert await pub.presence("nobody") == {}
        with Publisher(redis_server.url) as sync_pub:
            assert await asyncio.to_thread(sync_pub.presence, "t") == members
        await conv.disconnect()
    finally:
        await router.backplane.stop()


async def test_concurrent_async_publishes_keep_their_order(redis_server: RedisServer) -> None:
    """Unawaited publishes from one AsyncPublisher arrive in call order, batched."""
    router = rooms(redis_server.url)
    await router.backplane.start()
    try:
        conv = Conversation(router)
        await conv.connect()
        await conv.ask(request("join", {"topic": "burst"}))
        async with AsyncPublisher(redis_server.url) as pub:
            tasks = [asyncio.ensure_future(pub.publish("burst", n)) for n in range(200)]
            await asyncio.gather(*tasks)
            writer = pub._writer
            assert writer is not None and writer.batches < writer.commands
        got = [(await conv.reply())["payload"] for _ in range(200)]
        assert got == list(range(200))
        await conv.disconnect()
    finally:
        await router.backplane.stop()


async def test_unreachable_redis_raises_publish_failed(redis_server: RedisServer) -> None:
    """With Redis gone both publishers raise PublishFailed (a ConnectionError) naming it."""
    url = redis_server.url
    redis_server.kill()
    with Publisher(url, timeout=500 * MS) as pub, pytest.raises(PublishFailed, match="Redis at"):
        await asyncio.to_thread(pub.publish, "t", 1)
    async with AsyncPublisher(url, timeout=500 * MS) as apub:
        with pytest.raises(ConnectionError):
            await apub.publish("t", 1)


async def test_a_redis_that_does_not_answer_fails_the_batch_in_time(
    redis_server: RedisServer,
) -> None:
    """A Redis that stops answering fails every publish of the round trip with PublishFailed
    once the timeout passes; the publisher works again when Redis answers again."""
    async with AsyncPublisher(redis_server.url, timeout=300 * MS) as pub:
        await pub.publish("t", 0)
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            results = await asyncio.gather(
                *(pub.publish("t", n) for n in range(3)), return_exceptions=True
            )
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        assert all(isinstance(r, PublishFailed) for r in results), results
        async with asyncio.timeout(TIMEOUT):
            while True:
                try:
                    await pub.publish("t", 4)
                    break
                except PublishFailed:
                    await asyncio.sleep(20 * MS)


# Real uvicorn workers (examples.chat) fed from outside


@pytest.fixture
def worker(redis_server: RedisServer) -> Any:
    started = Worker(redis_server.url)
    try:
        yield started
    finally:
        started.stop()


async def joined(worker: Worker) -> Any:
    ws = await open_ws(worker)
    await wait_connected(ws, True)
    answer = await ask(ws, "room/join", {"room": "lobby", "name": "ada"}, 1)
    assert answer["status"] == 200
    return ws


async def test_a_worker_receives_what_redis_cli_alone_publishes(
    redis_server: RedisServer, worker: Worker
) -> None:
    """The documented format is enough: redis-cli's PUBLISH reaches a worker's subscriber."""
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        pytest.fail("redis-cli is needed: apt-get install redis-tools")
    ws = await joined(worker)
    try:
        frame = (
            '{"uuid":"ext-1","route":"room:lobby","status":200,"headers":{},'
            '"payload":{"text":"from redis-cli","name":"cron"}}'
        )
        done = await asyncio.to_thread(
            subprocess.run,
            [
                redis_cli,
                "-s",
                str(redis_server.path),
                "PUBLISH",
                "observable_socket:room:lobby",
                "0000000000000000" + frame,
            ],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
        assert done.returncode == 0 and done.stdout.strip() == "1", done
        assert await next_push(ws, "room:lobby") == {"text": "from redis-cli", "name": "cron"}
    finally:
        await ws.close()


async def test_a_worker_receives_a_publisher_and_the_cli(
    redis_server: RedisServer, worker: Worker
) -> None:
    """A Publisher and `observable-socket publish` (payload as argument and on stdin) reach
    a subscriber on a real worker, in order."""
    ws = await joined(worker)
    try:
        with Publisher(redis_server.url) as pub:
            await asyncio.to_thread(pub.publish, "room:lobby", {"text": "a", "name": "job"})
        cli = [sys.executable, "-m", "observable_socket_asgi", "publish", redis_server.url]
        argument = await asyncio.to_thread(
            subprocess.run,
            [*cli, "room:lobby", '{"text": "b", "name": "cli"}'],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
        assert argument.returncode == 0, argument.stderr
        stdin = await asyncio.to_thread(
            subprocess.run,
            [*cli, "room:lobby", "-"],
            input='{"text": "c", "name": "stdin"}',
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
        assert stdin.returncode == 0, stdin.stderr
        texts = [(await next_push(ws, "room:lobby"))["text"] for _ in range(3)]
        assert texts == ["a", "b", "c"]
    finally:
        await ws.close()


def test_the_cli_says_when_redis_did_not_take_it(redis_server: RedisServer) -> None:
    """`observable-socket publish` exits non-zero with a clear message when Redis is gone,
    and 2 for a payload that is not JSON."""
    url = redis_server.url
    redis_server.kill()
    cli = [sys.executable, "-m", "observable_socket_asgi", "publish", "--timeout", "0.5"]
    down = subprocess.run(
        [*cli, url, "t", "1"], capture_output=True, text=True, timeout=PROCESS_TIMEOUT
    )
    assert down.returncode == 3
    assert "did not take" in down.stderr and "Traceback" not in down.stderr
    bad = subprocess.run(
        [*cli, url, "t", "{not json"], capture_output=True, text=True, timeout=PROCESS_TIMEOUT
    )
    assert bad.returncode == 2 and "JSON" in bad.stderr


# Redis Cluster and Redis Sentinel (real ones, see tests/redis_topologies.py)


def sharded_bodies(pubsub: Any, count: int) -> list[bytes]:
    """The next `count` sharded message bodies (confirmations skipped), within TIMEOUT."""
    bodies: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    while len(bodies) < count and time.monotonic() < deadline:
        message = pubsub.get_sharded_message(timeout=TIMEOUT / 10)
        if message is not None and message["type"] == "smessage":
            bodies.append(message["data"])
    return bodies


def test_publishers_on_a_cluster_use_shard_channels_in_order(redis_cluster: RedisCluster) -> None:
    """On a three-master cluster pushes go by SPUBLISH on the topic's shard, numbered by
    the history script on that shard, in call order; topics spread over every node."""
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster as Client

    node: Any = ClusterNode
    nodes = [node("127.0.0.1", port) for port in redis_cluster.ports]
    reader = Client(startup_nodes=nodes, socket_timeout=TIMEOUT)
    pubsub = reader.pubsub()
    pubsub.ssubscribe("observable_socket:{room:lobby}")
    try:
        with Publisher(redis_cluster.url, history_size=50) as pub:
            pub.publish("room:lobby", "first")
            pub.close_subscribers("room:lobby", 4001, "moved")

        async def burst() -> None:
            async with AsyncPublisher(redis_cluster.url, history_size=50) as apub:
                await asyncio.gather(*(apub.publish("room:lobby", n) for n in range(30)))
                # 20 topics land on all three masters; each needs the script there
                await asyncio.gather(*(apub.publish(f"t{n}", n) for n in range(20)))
                kept = await apub.history("room:lobby")
                assert [p["payload"] for p in kept] == ["first", *range(30)]

        asyncio.run(burst())
        bodies = sharded_bodies(pubsub, 32)
        assert bodies[1].endswith(b"!close 4001 moved")
        offsets = [int(b[16:].split(b" ", 1)[0]) for i, b in enumerate(bodies) if i != 1]
        assert offsets == list(range(1, 32))
        for port in redis_cluster.ports:  # every master numbered some topic's pushes
            assert client(port).keys("observable_socket:h:{t*}:s"), port
    finally:
        pubsub.close()
        reader.close()


def test_a_publisher_follows_a_sentinel_failover(redis_sentinels: RedisSentinels) -> None:
    """After the master is killed the sentinels promote the replica, and the same Publisher
    publishes again to the new master, its history carried over."""
    with Publisher(redis_sentinels.url, history_size=10, timeout=500 * MS) as pub:
        pub.publish("news", "before")
        # replication is asynchronous: what the replica has not got dies with the master
        assert client(redis_sentinels.current_master()).wait(1, 10_000) == 1
        killed = redis_sentinels.kill_master()
        failures = 0
        deadline = time.monotonic() + 30 * TIMEOUT
        while True:
            try:
                pub.publish("news", "after")
                break
            except PublishFailed:
                failures += 1
                assert time.monotonic() < deadline, "no master after the failover"
                pause(50 * MS)
        assert redis_sentinels.current_master() != killed
        assert [p["payload"] for p in pub.history("news")] == ["before", "after"]
