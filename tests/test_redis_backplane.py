"""The Redis backplane against a real redis-server: across routers, processes and restarts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from observable_socket_asgi import SocketRouter, Status
from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane
from tests.helpers import MS, PROCESS_TIMEOUT, TIMEOUT, Conversation, free_socket, request
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent


def test_reconnect_delays_grow_to_max_backoff_with_jitter() -> None:
    """Reconnect delays stay under a ceiling that doubles from 0.1 s up to `max_backoff`."""
    delays = RedisBackplane("redis://127.0.0.1:1", max_backoff=1.0)._delays()
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    seen = [next(delays) for _ in ceilings]
    for delay, ceiling in zip(seen, ceilings, strict=True):
        assert 0.0 <= delay <= ceiling
    assert len(set(seen)) > 1  # jittered, not a fixed schedule


def chat(url: str) -> SocketRouter:
    router = SocketRouter(backplane=RedisBackplane(url, ping_interval=1.0, max_backoff=0.5))

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe(payload)
        return {"status": Status.OK}

    return router


async def test_publish_crosses_routers_once(redis_server: RedisServer) -> None:
    """A publish reaches subscribers of another router through Redis, and its own once."""
    a, b = chat(redis_server.url), chat(redis_server.url)
    await a.backplane.start()
    await b.backplane.start()
    try:
        assert a.backplane.connected and b.backplane.connected
        on_a, on_b = Conversation(a), Conversation(b)
        await on_a.connect()
        await on_b.connect()
        await on_a.ask(request("join", "room"))
        await on_b.ask(request("join", "room"))
        await b.publish("room", {"from": "b"})
        await a.publish("room", {"from": "a"})
        # Order holds per publisher only: a worker's own pushes skip the trip through Redis.
        for conv in (on_a, on_b):
            got = sorted([(await conv.reply())["payload"]["from"] for _ in range(2)])
            assert got == ["a", "b"]
        assert await on_a.nothing() and await on_b.nothing()
        await on_a.disconnect()
        await on_b.disconnect()
        assert a.backplane.topics == frozenset()
    finally:
        await a.backplane.stop()
        await b.backplane.stop()


async def test_publish_while_redis_is_down_stays_local(redis_server: RedisServer) -> None:
    """With Redis gone a publish still reaches this worker's subscribers and counts as dropped."""
    router = chat(redis_server.url)
    backplane = router.backplane
    transport = backplane.transport
    assert isinstance(transport, RedisBackplane)
    await backplane.start()
    try:
        conv = Conversation(router)
        await conv.connect()
        await conv.ask(request("join", "t"))
        redis_server.kill()
        async with asyncio.timeout(TIMEOUT):
            while backplane.connected:  # noqa: ASYNC110 - polled state, bounded
                await asyncio.sleep(10 * MS)
        await router.publish("t", "local only")
        assert (await conv.reply())["payload"] == "local only"
        assert transport.dropped == 1
        await conv.disconnect()
    finally:
        await backplane.stop()


# Two uvicorn processes sharing one Redis


class Worker:
    """`uvicorn examples.chat:app` in a subprocess, on a socket bound to a free port."""

    def __init__(self, redis_url: str) -> None:
        self.sock = free_socket()
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}"
        fd = self.sock.fileno()
        env = {**os.environ, "CHAT_REDIS_URL": redis_url}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.chat:app",
                "--fd",
                str(fd),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            pass_fds=[fd],
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(PROCESS_TIMEOUT)
        self.sock.close()


async def ask(ws: ClientConnection, route: str, payload: Any, uuid: int) -> Any:
    """Send a request and return its answer, setting aside pushes that arrive first."""
    await ws.send(request(route, payload, uuid=uuid))
    while True:
        frame = orjson.loads(await ws.recv())
        if frame.get("uuid") == uuid and "route" not in frame:
            return frame


async def open_ws(worker: Worker) -> ClientConnection:
    """Connect once the worker is serving (it may still be starting)."""
    async with asyncio.timeout(10_000 * MS):
        while True:
            assert worker.proc.poll() is None, "uvicorn exited"
            try:
                return await connect(worker.url, compression=None)
            except OSError:
                await asyncio.sleep(20 * MS)


async def wait_connected(ws: ClientConnection, expected: bool) -> None:
    async with asyncio.timeout(10_000 * MS):
        uuid = 1000
        while True:
            uuid += 1
            answer = await ask(ws, "chat/status", None, uuid)
            if answer["payload"]["backplane_connected"] is expected:
                return
            await asyncio.sleep(20 * MS)


async def next_push(ws: ClientConnection, topic: str) -> Any:
    async with asyncio.timeout(TIMEOUT):
        while True:
            frame = orjson.loads(await ws.recv())
            if frame.get("route") == topic and frame["payload"].get("text") is not None:
                return frame["payload"]


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for _ in range(2):
            started.append(Worker(redis_server.url))  # the first stopped if the second fails
        yield started
    finally:
        for worker in started:
            worker.stop()


async def test_two_processes_share_pushes_and_survive_a_redis_restart(
    redis_server: RedisServer, workers: list[Worker]
) -> None:
    """A client on worker A receives what B published, also after Redis is killed and back."""
    a, b = await open_ws(workers[0]), await open_ws(workers[1])
    try:
        await wait_connected(a, True)
        await wait_connected(b, True)
        join = await ask(a, "room/join", {"room": "lobby", "name": "ada"}, 1)
        assert join["status"] == 200 and join["payload"] == {"topic": "room:lobby"}

        said = await ask(b, "room/say", {"room": "lobby", "text": "hello", "name": "bob"}, 2)
        assert said["status"] == 202
        assert await next_push(a, "room:lobby") == {"text": "hello", "name": "bob"}

        redis_server.kill()
        await wait_connected(a, False)
        await wait_connected(b, False)
        redis_server.start()
        await wait_connected(a, True)
        await wait_connected(b, True)

        await ask(b, "room/say", {"room": "lobby", "text": "again", "name": "bob"}, 3)
        assert await next_push(a, "room:lobby") == {"text": "again", "name": "bob"}
    finally:
        await a.close()
        await b.close()
