"""The demo server: `uvicorn examples.app:app` (or `scripts/serve`), then talk to ws://127.0.0.1:8000/ws.

It serves the README's quickstart route (`math/sum`), an echo, two push demos (`clock/ticks`
answers then pushes to the caller; `clock/subscribe` subscribes the caller to the topic
"clock", published every second: `observable-socket listen URL --call clock/subscribe`), and
the "fetch once, use twice" article route on a real SQLite database, created and seeded on first
start. A small ASGI middleware puts a database session and the user (from `?user=...`) into
the scope of each connection, which is where the article hooks look for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from observable_socket_asgi import SocketRouter, Status
from observable_socket_asgi.types import ASGIReceiveCallable, ASGISendCallable, Scope

from .articles import router as articles
from .db import dispose, get_async_db, init_db

log = logging.getLogger("uvicorn.error")


async def announce() -> None:
    await init_db()
    log.info(
        "ObservableSocket demo ready. Try:\n"
        "  .venv/bin/observable-socket call ws://127.0.0.1:8000/ws math/sum '[1, 2, 3, 4]'\n"
        "  .venv/bin/observable-socket call ws://127.0.0.1:8000/ws get-article -H article=1\n"
        "  or point the ObservableSocket JS client at ws://127.0.0.1:8000/ws"
    )


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

router = SocketRouter(on_startup=[announce, start_clock], on_shutdown=[stop_clock, dispose])


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


class DatabaseMiddleware:
    """Give each WebSocket connection an `AsyncSession` in `scope["db"]` and a user.

    The user comes from the query string (`?user=alice`), standing in for real
    authentication. One session serves one connection; the demo's article requests are
    short and sequential per client.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        from urllib.parse import parse_qs

        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        async with get_async_db() as db:
            scope = dict(scope)  # type: ignore[assignment]
            scope["db"] = db  # type: ignore[typeddict-unknown-key]
            scope["user"] = query.get("user", [None])[0]  # type: ignore[typeddict-unknown-key]
            await self.app(scope, receive, send)


app = DatabaseMiddleware(router)
