"""Scale-out: publishes Redis accepts from outside a router, and pushes two workers deliver.

    python -m bench.scale_out [--quick] [--publishes 20000] [--pushes 1000] [--subscribers 20]

Two measurements, every row in the same run:

1. Accepted: `publishes` pushes of about 100 B published to one topic with no subscriber,
   from outside a router, until Redis has answered the last one; publishes per second.
   - `memory`: `router.publish()` on the in-memory backplane (in process, nothing crosses
     a socket): the ceiling, for scale;
   - `Publisher`: the blocking publisher, one round trip per publish;
   - `AsyncPublisher`: every publish started at once, unawaited, through the ordered,
     pipelined writer (what queues during a round trip leaves in the next one);
   - `pool`: the same burst through redis-py's connection pool, as the Redis backplane's
     `publish` does today; its `inversions` count the pushes a subscriber received before
     one published earlier (the ordered writer's must be 0).
   Each on a single redis-server and on a three-master Redis Cluster (sharded pub/sub),
   both started here.
2. Delivered: `subscribers` clients split over two uvicorn workers of `examples.chat`
   sharing a single Redis, and one client on the second worker sending `pushes` unawaited
   `room/say` requests; pushes per second delivered (subscribers x pushes / time until the
   last arrived), and the inversions one subscriber on each worker saw; on a single Redis
   and on the three-master cluster. Beside it, the same on one worker with the in-memory
   backplane, and the pushes sent by an external `AsyncPublisher` instead of a client.

The clients, the publishers and Redis share the machine with the workers: the figures are
for comparison within the run. Results go to bench/results/scale_out.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from bench._harness import ROOT, RedisServer, env_int, save

PAYLOAD = {"text": "x" * 40, "n": 0}
#: publishes in the burst whose arrival order a subscriber records
ORDER_BURST = 2000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.scale_out", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    p.add_argument("--publishes", type=int)
    p.add_argument("--pushes", type=int)
    p.add_argument("--subscribers", type=int)
    return p


def inversions(seen: list[int]) -> int:
    """How many pushes arrived after one that was published later."""
    top, count = -1, 0
    for n in seen:
        if n < top:
            count += 1
        top = max(top, n)
    return count


# 1. Accepted


async def accepted_memory(count: int) -> dict[str, Any]:
    from observable_socket_asgi import SocketRouter

    router = SocketRouter()
    started = time.perf_counter()
    for n in range(count):
        await router.publish("bench", {**PAYLOAD, "n": n})
    return {"per_s": count / (time.perf_counter() - started)}


def accepted_sync(url: str, count: int) -> dict[str, Any]:
    from observable_socket_asgi import Publisher

    with Publisher(url, timeout=30) as pub:
        pub.publish("warm", None)
        started = time.perf_counter()
        for n in range(count):
            pub.publish("bench", {**PAYLOAD, "n": n})
        return {"per_s": count / (time.perf_counter() - started)}


async def watched(
    url: str, count: int, burst: Callable[[], Awaitable[int]], watch: bool
) -> dict[str, Any]:
    """Run `burst` (it returns how many publishes Redis took; the others were dropped) and
    time it; with `watch`, a raw subscriber of the channel records what arrives, for the
    order (the subscriber then shares the process: no rate is reported)."""
    from observable_socket_asgi.pubsub._redis_urls import async_client, parse

    if not watch:
        started = time.perf_counter()
        taken = await burst()
        return {"per_s": taken / (time.perf_counter() - started), "dropped": count - taken}
    target = parse(url)
    reader = async_client(target)
    pubsub = reader.pubsub()
    channel = "observable_socket:{bench}" if target.cluster else "observable_socket:bench"
    if target.cluster:
        await pubsub.ssubscribe(channel)
    else:
        await pubsub.subscribe(channel)
    seen: list[int] = []
    expected = [count]

    async def collect() -> None:
        while len(seen) < expected[0]:
            message = await (
                pubsub.get_sharded_message(timeout=1.0)
                if target.cluster
                else pubsub.get_message(timeout=1.0)
            )
            if message is not None and message["type"] in ("message", "smessage"):
                seen.append(orjson.loads(message["data"][16:])["payload"]["n"])

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.2)
    expected[0] = taken = await burst()
    async with asyncio.timeout(60):
        await collector
    await pubsub.aclose()
    await reader.aclose()
    return {"inversions": inversions(seen), "dropped": count - taken}


async def accepted_ordered(url: str, count: int, watch: bool) -> dict[str, Any]:
    from observable_socket_asgi import AsyncPublisher

    async with AsyncPublisher(url, timeout=60) as pub:
        await pub.publish("warm", None)

        async def burst() -> int:
            await asyncio.gather(*(pub.publish("bench", {**PAYLOAD, "n": n}) for n in range(count)))
            return count

        result = await watched(url, count, burst, watch)
        writer = pub._writer
        result["per_batch"] = writer.commands / max(1, writer.batches)
        return result


async def accepted_pool(url: str, count: int, watch: bool) -> dict[str, Any]:
    from observable_socket_asgi.envelope import encode_push
    from observable_socket_asgi.pubsub._redis_urls import async_client, parse

    target = parse(url)
    client = async_client(target)
    verb = "SPUBLISH" if target.cluster else "PUBLISH"
    channel = "observable_socket:{bench}" if target.cluster else "observable_socket:bench"
    origin = b"0" * 16

    # timed: at most the pool's 100 connections in flight; watched: the whole burst at
    # once, as unawaited publishes do (redis-py refuses past 100: today's backplane drops)
    bound = asyncio.Semaphore(count if watch else 100)

    async def one(n: int) -> None:
        frame = encode_push("bench", {**PAYLOAD, "n": n})
        async with bound:
            await client.execute_command(verb, channel, origin + frame.encode())

    async def burst() -> int:
        done = await asyncio.gather(*(one(n) for n in range(count)), return_exceptions=True)
        return sum(1 for result in done if result is None)

    try:
        return await watched(url, count, burst, watch)
    finally:
        await client.aclose()


def cluster_url() -> tuple[Any, str] | tuple[None, str]:
    """A three-master cluster (tests/redis_topologies.py), or None and why not."""
    try:
        from tests.redis_topologies import RedisCluster, started

        cluster = started(RedisCluster)
        assert isinstance(cluster, RedisCluster)
        return cluster, cluster.url
    except Exception as exc:  # the test extra, redis-server 7, or the cluster itself
        return None, f"no cluster: {exc!r}"[:200]


def accepted(count: int) -> dict[str, Any]:
    rows: dict[str, Any] = {"memory": asyncio.run(accepted_memory(count))}
    redis = RedisServer()
    cluster, url = cluster_url()
    try:
        for where, target in (("redis", redis.url), ("cluster", url if cluster else None)):
            if target is None:
                rows[where] = {"skipped": url}
                continue
            burst = min(count, ORDER_BURST)
            rows[where] = {
                "Publisher": accepted_sync(target, count),
                "AsyncPublisher": asyncio.run(accepted_ordered(target, count, False)),
                "pool": asyncio.run(accepted_pool(target, count, False)),
                "order, AsyncPublisher": asyncio.run(accepted_ordered(target, burst, True)),
                "order, pool": asyncio.run(accepted_pool(target, burst, True)),
            }
    finally:
        redis.stop()
        if cluster is not None:
            cluster.close()
    return rows


# 2. Delivered by two workers


class Worker:
    """`uvicorn examples.chat:app` on a free port, with or without the Redis backplane."""

    def __init__(self, redis_url: str | None) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "CHAT_REDIS_URL": redis_url or ""}
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "examples.chat:app"),
                *("--port", str(self.port), "--log-level", "warning"),
            ],
            cwd=ROOT,
            env=env,
        )
        self.url = f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def _open(url: str) -> Any:
    from websockets.asyncio.client import connect

    async with asyncio.timeout(20):
        while True:
            try:
                return await connect(url, compression=None, max_queue=None)
            except OSError:
                await asyncio.sleep(0.05)


async def _ask(ws: Any, route: str, payload: Any) -> None:
    await ws.send(orjson.dumps({"uuid": 1, "route": route, "headers": {}, "payload": payload}))
    while "route" in orjson.loads(await ws.recv()):
        pass


async def delivered(
    workers: list[Worker], subscribers: int, pushes: int, external: str | None
) -> dict[str, Any]:
    """Subscribers split over `workers`; pushes from a client on the last worker (or from an
    external AsyncPublisher on `external`); delivered per second and inversions."""
    clients = [await _open(workers[i % len(workers)].url) for i in range(subscribers)]
    for ws in clients:
        await _ask(ws, "room/join", {"room": "bench", "name": "s"})
    seen: list[list[int]] = [[] for _ in clients]

    async def read(i: int, ws: Any) -> None:
        while len(seen[i]) < pushes:
            push = orjson.loads(await ws.recv())
            # examples.chat forwards `text` and `name` only: the number travels as the text
            if push.get("route") == "room:bench" and "text" in push["payload"]:
                seen[i].append(int(push["payload"]["text"]))

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(clients)]
    sender = await _open(workers[-1].url)
    started = time.perf_counter()
    if external is None:
        for n in range(pushes):
            say = {"room": "bench", "text": str(n)}
            await sender.send(
                orjson.dumps({"uuid": n + 10, "route": "room/say", "headers": {}, "payload": say})
            )
    else:
        from observable_socket_asgi import AsyncPublisher

        async with AsyncPublisher(external, timeout=60) as pub:
            await asyncio.gather(
                *(pub.publish("room:bench", {"text": str(n), "name": "p"}) for n in range(pushes))
            )
    async with asyncio.timeout(120):
        await asyncio.gather(*readers)
    elapsed = time.perf_counter() - started
    for ws in [*clients, sender]:
        await ws.close()
    return {
        "per_s": subscribers * pushes / elapsed,
        "inversions": [inversions(seen[0]), inversions(seen[-1])],
    }


def two_workers(url: str, subscribers: int, pushes: int) -> dict[str, Any]:
    """The pushes of a client on the second worker, then of an external AsyncPublisher."""
    two = [Worker(url), Worker(url)]
    try:
        return {
            "client": asyncio.run(delivered(two, subscribers, pushes, None)),
            "AsyncPublisher": asyncio.run(delivered(two, subscribers, pushes, url)),
        }
    finally:
        for worker in two:
            worker.stop()


def delivery(subscribers: int, pushes: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    memory = [Worker(None)]
    try:
        rows["memory, 1 worker"] = asyncio.run(delivered(memory, subscribers, pushes, None))
    finally:
        memory[0].stop()
    redis = RedisServer()
    try:
        rows["redis, 2 workers"] = two_workers(redis.url, subscribers, pushes)
    finally:
        redis.stop()
    cluster, url = cluster_url()
    if cluster is None:
        rows["cluster, 2 workers"] = {"skipped": url}
        return rows
    try:
        rows["cluster, 2 workers"] = two_workers(url, subscribers, pushes)
    finally:
        cluster.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.quick:
        os.environ.setdefault("BENCH_QUICK", "1")
    publishes = args.publishes or env_int("BENCH_SCALE_PUBLISHES", 20_000, 500)
    pushes = args.pushes or env_int("BENCH_SCALE_PUSHES", 1000, 50)
    subscribers = args.subscribers or env_int("BENCH_SCALE_SUBSCRIBERS", 20, 4)
    result = {
        "publishes": publishes,
        "accepted": accepted(publishes),
        "pushes": pushes,
        "subscribers": subscribers,
        "delivered": delivery(subscribers, pushes),
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    save("scale_out", result)


if __name__ == "__main__":
    main()
