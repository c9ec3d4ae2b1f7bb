"""Scenario: what topic history adds to a publish, in memory and through Redis.

    python -m bench.history_cost        # or: scripts/bench history_cost

In one process, SUBSCRIBERS connections (driven straight through the ASGI interface, no
sockets, so only the router's own work is timed) subscribe to one topic; PUBLISHES pushes of
about 100 bytes are then published one after another, and the clock stops when the last
subscriber has the last push. Four cases alternate in a seeded order each repeat: the
in-memory backplane with history off and on, and the Redis backplane (a redis-server started
here on a free loopback port; skipped when none is installed) with history off and on. The
result is the median time per publish and the ratio of history on to history off on the same
backplane. Environment: BENCH_REPEATS (5), BENCH_PUBLISHES (2000), BENCH_SUBSCRIBERS (100).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from typing import Any

from bench._harness import RedisServer, env_int, median, order, save
from observable_socket_asgi import SocketRouter

HISTORY_SIZE = 1000


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """The harness's throwaway redis-server, or None when none is installed."""
    if shutil.which("redis-server") is None:
        yield None
        return
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


async def one_run(backplane: str | None, history: bool, subscribers: int, publishes: int) -> float:
    """Seconds per publish, until every subscriber has every push."""
    router = SocketRouter(
        backplane=backplane,
        history_size=HISTORY_SIZE if history else 0,
        history_ttl=300,
        idle_timeout=None,
        max_queued_pushes=publishes + 10,
    )

    @router.route("sub")
    async def sub(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe("t")
        return {}

    await router.backplane.start()
    target = subscribers * publishes
    counts = {"pushes": 0, "replies": 0}
    subscribed, finished = asyncio.Event(), asyncio.Event()

    async def send(message: Any) -> None:
        if message["type"] != "websocket.send":
            return
        if message["text"].startswith('{"uuid":"sub-'):
            counts["replies"] += 1
            if counts["replies"] == subscribers:
                subscribed.set()
        else:
            counts["pushes"] += 1
            if counts["pushes"] == target:
                finished.set()

    queues: list[asyncio.Queue[Any]] = []
    tasks = []
    for n in range(subscribers):
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queue.put_nowait({"type": "websocket.connect"})
        frame = f'{{"uuid":"sub-{n}","route":"sub","payload":null}}'
        queue.put_nowait({"type": "websocket.receive", "text": frame})
        scope = {
            "type": "websocket",
            "path": "/",
            "headers": [],
            "query_string": b"",
            "client": ("127.0.0.1", 1000 + n),
            "subprotocols": [],
            "asgi": {"version": "3.0"},
        }
        queues.append(queue)
        tasks.append(asyncio.create_task(router(scope, queue.get, send)))  # type: ignore[arg-type]
    await asyncio.wait_for(subscribed.wait(), 30)

    payload = {"text": "x" * 80}
    start = time.perf_counter()
    for _ in range(publishes):
        await router.publish("t", payload)
    await asyncio.wait_for(finished.wait(), 120)
    elapsed = time.perf_counter() - start

    for queue in queues:
        queue.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.gather(*tasks)
    await router.backplane.stop()
    return elapsed / publishes


def main() -> None:
    repeats = env_int("BENCH_REPEATS", 5)
    publishes = env_int("BENCH_PUBLISHES", 2000)
    subscribers = env_int("BENCH_SUBSCRIBERS", 100)
    with redis_server() as url:
        cases: list[tuple[str, str | None, bool]] = [
            ("memory", None, False),
            ("memory", None, True),
        ]
        if url is not None:
            cases += [("redis", url, False), ("redis", url, True)]
        else:
            print("redis-server not found: the Redis cases are skipped")
        times: dict[tuple[str, bool], list[float]] = {(n, h): [] for n, _, h in cases}
        for repeat in range(repeats):
            for name, backplane, history in order(cases, repeat):
                seconds = asyncio.run(one_run(backplane, history, subscribers, publishes))
                times[name, history].append(seconds)
                print(
                    f"r{repeat} {name:<6} history {'on ' if history else 'off'} "
                    f"{seconds * 1e6:8.1f} us/publish ({subscribers} subscribers)",
                    flush=True,
                )
    results: dict[str, Any] = {}
    for name in ("memory", "redis"):
        if (name, False) not in times:
            continue
        off, on = median(times[name, False]), median(times[name, True])
        results[name] = {"off_us": off * 1e6, "on_us": on * 1e6, "ratio": on / off}
        print(
            f"{name:<6} history off {off * 1e6:8.1f} us  on {on * 1e6:8.1f} us  "
            f"ratio {on / off:.2f}"
        )
    path = save(
        "history_cost",
        {
            "publishes": publishes,
            "subscribers": subscribers,
            "repeats": repeats,
            "history_size": HISTORY_SIZE,
            "times": {f"{n}/{h}": t for (n, h), t in times.items()},
            "results": results,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
