"""The demo server: `scripts/serve` (or `python -m examples.app`), run from the clone's root.

It serves the quickstart route (`math/sum`), an echo, two push demos (`clock/ticks` answers
then pushes to the caller; `clock/subscribe` subscribes the caller to the topic "clock",
published every second: `observable-socket listen URL --call clock/subscribe`), and the "fetch
once, use twice" article route on a real SQLite database, created and seeded on first start. A
small ASGI middleware (`examples.db.DatabaseMiddleware`) puts a database session and the user
(from `?user=...`) into the scope of each connection, which is where the article hooks look for
them.

`python -m examples.app` takes its address from `--host`/`--port`, else from the `HOST` and
`PORT` environment variables, else 127.0.0.1:8000; port 0 picks a free one. It prints the
address it really listens on once the socket is bound. `uvicorn examples.app:app` serves the
same app with uvicorn's own options (and prints uvicorn's own address line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn

from observable_socket_asgi import SocketRouter, Status

from .articles import router as articles
from .db import DatabaseMiddleware, dispose, init_db

log = logging.getLogger("uvicorn.error")


async def start_clock() -> None:
    clock_task.append(asyncio.get_running_loop().create_task(publish_clock()))


async def stop_clock() -> None:
    for task in clock_task:
        task.cancel()
    await asyncio.gather(*clock_task, return_exceptions=True)
    clock_task.clear()


async def publish_clock() -> None:
    """Publish the time on topic "clock" every second, for the `clock/subscribe` callers."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await router.publish("clock", {"time": time.strftime("%H:%M:%S")})
        except Exception:  # a broker hiccup must not stop the clock
            log.exception("publishing the clock failed")


# the clock's task, while the app runs (a list, so the hooks need no global statement)
clock_task: list[asyncio.Task[None]] = []

router = SocketRouter(on_startup=[init_db, start_clock], on_shutdown=[stop_clock, dispose])


@router.route("math/sum")
async def sum_handler(ws, headers, payload):  # type: ignore[no-untyped-def]
    return {"status": Status.OK, "payload": {"sum": sum(payload or [])}}


@router.route("echo")
async def echo(ws: Any, headers: dict[str, Any], payload: Any) -> dict[str, Any]:
    return {"headers": headers, "payload": payload}


@router.route("clock/ticks")
async def ticks(ws: Any, headers: dict[str, Any], payload: Any) -> dict[str, Any]:
    """Answer at once, then push `count` ticks (route "clock/tick") one every 100 ms."""
    count = min(int(payload or 3), 50)

    async def push_ticks() -> None:
        for n in range(1, count + 1):
            await asyncio.sleep(0.1)
            await ws.push("clock/tick", {"n": n})

    task = asyncio.get_running_loop().create_task(push_ticks())
    ws.state.ticker = task  # keep a reference; it ends with the connection's pushes refused
    return {"status": Status.ACCEPTED, "payload": {"ticks": count}}


@router.route("clock/subscribe")
async def subscribe_clock(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    """Subscribe the caller to the topic "clock": a push (route "clock") every second."""
    await ws.subscribe("clock")
    return {"payload": {"topic": "clock"}}


# The article route lives in its own module, written as the README writes it.
router.include_router(articles)


app = DatabaseMiddleware(router)


def banner(url: str) -> str:
    """What to type next, with the address the server really listens on."""
    cli = str(Path(sys.executable).with_name("observable-socket"))
    with contextlib.suppress(ValueError):  # shorter when it lies below the current directory
        cli = str(Path(cli).relative_to(Path.cwd()))
    return (
        f"ObservableSocket demo listening on {url}. Try:\n"
        f"  {cli} call {url} math/sum '[1, 2, 3, 4]'\n"
        f"  {cli} call {url} get-article -H article=1\n"
        f"  {cli} listen {url} --call clock/subscribe\n"
        f"  or point the ObservableSocket JS client at {url}"
    )


def main(argv: list[str] | None = None) -> int:
    """Serve the demo on the address from the arguments or the environment, then say where;
    return the exit status: 0 after Ctrl-C, uvicorn's own when it could not start."""
    parser = argparse.ArgumentParser(prog="python -m examples.app", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
    try:
        return asyncio.run(_serve(uvicorn.Server(config)))
    except KeyboardInterrupt:
        # uvicorn shut down gracefully on Ctrl-C, then raised the signal again for its
        # caller, as `uvicorn.run` does: the traceback would only repeat "Shutting down"
        return 0


async def _serve(server: uvicorn.Server) -> int:
    announce = asyncio.create_task(_announce(server))
    try:
        # awaited here, not in a task of its own: a failed start (a port in use) ends in
        # uvicorn's SystemExit, which a task would report as a second traceback
        await server.serve()
    except SystemExit as exc:
        # uvicorn has logged why (one line, "address already in use"); keep its status
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        announce.cancel()
    return 0


async def _announce(server: uvicorn.Server) -> None:
    """Print the banner once uvicorn has bound its socket (it says so only through a flag,
    so poll it)."""
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    print(banner(f"ws://{host}:{port}/ws"), flush=True)


if __name__ == "__main__":
    sys.exit(main())
