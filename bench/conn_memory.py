"""What one idle connection keeps, counted by tracemalloc, by allocation site: a figure no
other load on the machine can move.

    python -m bench.conn_memory [--connections N] [--contenders bare,router] [--top 15]

Each contender of `bench/apps.py` is driven in process (no sockets, no server): a small
stand-in server object per connection hands the app `websocket.connect`, then one `echo`
frame (so the app is really serving it, as in `bench/idle_memory.py`), then nothing: the
app's task waits in `receive()`, idle. The loop is uvloop, as under uvicorn (`--loop asyncio`
for the standard one). A first batch warms every lazy import and first-use
cache; then tracemalloc's snapshot before and after N more connections, divided by N, is
what one idle connection keeps, Python objects only. The stand-in server's own objects (its
task, the connection's frames and the scope a server builds) are counted alike for every
contender, so the difference to `bare` is the app's own share; the real-server figure
(uvicorn's protocol and transport on top) is `bench/idle_memory.py`'s RSS.

It prints the bytes per connection by site (top N), for each contender, and the totals.
Results: bench/results/conn_memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from bench._harness import save

CONTENDERS = ["bare", "router"]
WARM = 200
CONNECTIONS = 2000
FRAME = '{"uuid":1,"route":"echo","headers":{},"payload":[1,2,3,4],"status":200}'
#: what the `websockets` client sends in its handshake (uvicorn keeps the list in the scope)
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
    (b"user-agent", b"Python/3.11 websockets/15.0"),
]


class _Server:
    """One connection's server side, as small as a server's own state can be."""

    __slots__ = ("answered", "idle", "step")

    def __init__(self, idle: asyncio.Future[None], answered: Callable[[], None]) -> None:
        self.step = 0
        self.idle = idle
        self.answered = answered

    async def receive(self) -> dict[str, Any]:
        step = self.step
        self.step = step + 1
        if step == 0:
            return {"type": "websocket.connect"}
        if step == 1:
            return {"type": "websocket.receive", "text": FRAME}
        await self.idle  # idle until the run ends
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self.answered()


def _scope(port: int) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", port),
        "root_path": "",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": list(HEADERS),
        "subprotocols": [],
        "state": {},
    }


async def _open(app: Any, count: int, idle: asyncio.Future[None], tasks: list[Any]) -> None:
    """Open `count` connections and wait until each has answered its echo."""
    loop = asyncio.get_running_loop()
    left = count
    done = loop.create_future()

    def answered() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            done.set_result(None)

    for _ in range(count):
        server = _Server(idle, answered)
        scope = _scope(10000 + len(tasks) % 50000)
        tasks.append(loop.create_task(app(scope, server.receive, server.send)))
    await done
    for _ in range(5):  # let every connection settle into its idle receive()
        await asyncio.sleep(0)


async def _measure(name: str, connections: int, top: int) -> dict[str, Any]:
    from bench.apps import build

    app = build(name)
    idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    tasks: list[Any] = []
    await _open(app, WARM, idle, tasks)
    gc.collect()
    before = tracemalloc.take_snapshot()
    await _open(app, connections, idle, tasks)
    gc.collect()
    after = tracemalloc.take_snapshot()
    idle.set_result(None)
    await asyncio.gather(*tasks)
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "lineno")
    total = sum(stat.size_diff for stat in stats)
    sites = [
        {
            "site": f"{_short(stat.traceback[0].filename)}:{stat.traceback[0].lineno}",
            "bytes": stat.size_diff / connections,
            "blocks": stat.count_diff / connections,
        }
        for stat in sorted(stats, key=lambda s: -s.size_diff)[:top]
    ]
    return {"contender": name, "bytes_per_conn": total / connections, "sites": sites}


def _short(filename: str) -> str:
    for marker in ("/observable_socket_asgi/", "/bench/", "/asyncio/", "/lib/python"):
        at = filename.find(marker)
        if at >= 0:
            return filename[at + 1 :]
    return filename


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.conn_memory", description=__doc__.split("\n")[0]
    )
    p.add_argument("--connections", type=int, default=CONNECTIONS)
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    runner: Any = asyncio.run
    if args.loop == "uvloop":  # what uvicorn runs on when it is installed
        import uvloop

        runner = uvloop.run
    tracemalloc.start(1)
    runs = []
    for name in args.contenders.split(","):
        run = runner(_measure(name, args.connections, args.top))
        runs.append(run)
        print(f"{name}: {run['bytes_per_conn']:,.0f} bytes per idle connection")
        for site in run["sites"]:
            print(f"  {site['bytes']:>8,.1f} B {site['blocks']:>5.2f} blocks  {site['site']}")
    base = next((run for run in runs if run["contender"] == "bare"), None)
    if base is not None:
        for run in runs:
            if run is not base:
                share = run["bytes_per_conn"] - base["bytes_per_conn"]
                print(f"{run['contender']} over bare: {share:+,.0f} bytes per connection")
    print(f"wrote {save('conn_memory', {'runs': runs, 'connections': args.connections})}")


if __name__ == "__main__":
    main()
