"""Resume, idempotent retries and presence on two real uvicorn workers sharing a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import MS, TIMEOUT, free_socket, request
from tests.redis_servers import RedisServer, redis_server  # noqa: F401

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent
PRESENCE_TTL = 1000 * MS


class Worker:
    """`uvicorn examples.rooms:app` in a subprocess, on a socket bound to a free port."""

    def __init__(self, redis_url: str) -> None:
        self.sock = free_socket()
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}"
        fd = self.sock.fileno()
        env = {**os.environ, "ROOMS_REDIS_URL": redis_url, "ROOMS_PRESENCE_TTL": str(PRESENCE_TTL)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.rooms:app",
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.sock.close()


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[list[Worker]]:  # noqa: F811
    started: list[Worker] = []
    try:
        for _ in range(2):
            started.append(Worker(redis_server.url))  # the first stopped if the second fails
        yield started
    finally:
        for worker in started:
            worker.stop()


class Peer:
    """One client connection: requests by uuid, pushes kept in arrival order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self.uuid = 0

    async def ask(self, route: str, payload: Any, uuid: Any = None) -> dict[str, Any]:
        if uuid is None:
            self.uuid += 1
            uuid = f"req-{self.uuid}"
        await self.ws.send(request(route, payload, uuid=uuid))
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = orjson.loads(await self.ws.recv())
                if "route" in frame:
                    self.pushes.append(frame)
                elif frame.get("uuid") == uuid:
                    answer: dict[str, Any] = frame
                    return answer

    async def wait_pushes(self, count: int) -> list[dict[str, Any]]:
        """Read until `count` pushes with a position have arrived; return those."""
        async with asyncio.timeout(TIMEOUT):
            while len(self.positioned()) < count:
                frame = orjson.loads(await self.ws.recv())
                if "route" in frame:
                    self.pushes.append(frame)
        return self.positioned()

    def positioned(self) -> list[dict[str, Any]]:
        return [p for p in self.pushes if "offset" in p["headers"]]

    async def close(self) -> None:
        await self.ws.close()


async def open_peer(worker: Worker, user: str = "ada") -> Peer:
    """Connect once the worker is serving and its backplane is connected."""
    async with asyncio.timeout(10_000 * MS):
        while True:
            assert worker.proc.poll() is None, "uvicorn exited"
            try:
                ws = await connect(f"{worker.url}/?user={user}", compression=None)
                break
            except OSError:
                await asyncio.sleep(0.02)
    peer = Peer(ws)
    await wait_connected(peer, True)
    return peer


async def wait_connected(peer: Peer, expected: bool) -> None:
    async with asyncio.timeout(10_000 * MS):
        while True:
            answer = await peer.ask("rooms/status", None)
            if answer["payload"]["backplane_connected"] is expected:
                return
            await asyncio.sleep(0.02)


async def test_resume_on_the_other_worker_gets_exactly_the_missed_pushes(
    workers: list[Worker],
) -> None:
    """Away while 100 pushes are published, a client resumes on the other worker with
    exactly those 100, in order, then live ones: no duplicate, no gap."""
    one, two = workers
    ada, bob = await open_peer(one), await open_peer(two, "bob")
    try:
        joined = await ada.ask("room/join", {"room": "lobby"})
        assert joined["status"] == 200 and joined["payload"]["recovered"] is False
        await bob.ask("room/say", {"room": "lobby", "text": "before"})
        (seen,) = await ada.wait_pushes(1)
        position = {"offset": seen["headers"]["offset"], "epoch": seen["headers"]["epoch"]}
        assert position["offset"] == joined["payload"]["offset"] + 1
        await ada.close()

        for n in range(100):
            said = await bob.ask("room/say", {"room": "lobby", "text": n})
            assert said["status"] == 202

        ada = await open_peer(two)
        back = await ada.ask("room/join", {"room": "lobby", "since": position})
        assert back["payload"] == {
            "recovered": True,
            "offset": position["offset"] + 100,
            "epoch": position["epoch"],
        }
        await bob.ask("room/say", {"room": "lobby", "text": "live"})
        pushes = await ada.wait_pushes(101)
        assert [p["payload"]["text"] for p in pushes] == [*range(100), "live"]
        offsets = [p["headers"]["offset"] for p in pushes]
        assert offsets == list(range(position["offset"] + 1, position["offset"] + 102))
        assert {p["headers"]["epoch"] for p in pushes} == {position["epoch"]}
        assert await _quiet(ada)
    finally:
        await ada.close()
        await bob.close()


async def _quiet(peer: Peer) -> bool:
    """No further positioned push arrives (a duplicate would)."""
    before = len(peer.positioned())
    await peer.ask("rooms/status", None)
    return len(peer.positioned()) == before


async def test_resume_after_redis_restarted_empty_is_not_recovered(
    redis_server: RedisServer,  # noqa: F811
    workers: list[Worker],
) -> None:
    """Redis lost the history: the resume says recovered=False, with a new epoch."""
    one, two = workers
    ada, bob = await open_peer(one), await open_peer(two, "bob")
    try:
        await ada.ask("room/join", {"room": "lobby"})
        await bob.ask("room/say", {"room": "lobby", "text": "hello"})
        (seen,) = await ada.wait_pushes(1)
        position = {"offset": seen["headers"]["offset"], "epoch": seen["headers"]["epoch"]}
        await ada.close()

        redis_server.kill()
        await wait_connected(bob, False)
        redis_server.start()
        await wait_connected(bob, True)

        ada = await open_peer(two)
        back = await ada.ask("room/join", {"room": "lobby", "since": position})
        assert back["status"] == 200
        assert back["payload"]["recovered"] is False
        assert back["payload"]["epoch"] != position["epoch"]
        assert back["payload"]["offset"] == 0
        await bob.ask("room/say", {"room": "lobby", "text": "after"})
        (live,) = await ada.wait_pushes(1)
        assert live["payload"]["text"] == "after"
        # numbering starts over in an epoch the publish made (the subscribe made none)
        assert live["headers"]["offset"] == 1
        assert live["headers"]["epoch"] not in (position["epoch"], back["payload"]["epoch"])
    finally:
        await ada.close()
        await bob.close()


async def total_runs(*peers: Peer) -> int:
    return sum([(await p.ask("orders/runs", None))["payload"] for p in peers])


async def test_idempotent_order_runs_once_whatever_the_client_retries(
    workers: list[Worker],
) -> None:
    """Retried after a forced disconnect, concurrently, and on the other worker, the
    handler runs once; another payload is 409; another user is another key."""
    one, two = workers
    order = {"item": "tea", "work": 300 * MS}
    uuid = "7d3f0c52-0b7e-4a57-9d0f-1c2b3a4d5e6f"
    first = await open_peer(one)
    await first.ws.send(request("orders/create", order, uuid=uuid))
    await first.ws.close()  # the answer is never read: the client cannot know if it ran

    a, b = await open_peer(one), await open_peer(two)
    try:
        answers = await asyncio.gather(
            a.ask("orders/create", order, uuid), b.ask("orders/create", order, uuid)
        )
        assert answers[0] == answers[1]
        assert answers[0]["status"] == 201 and answers[0]["payload"]["order"] == "tea"
        again = await b.ask("orders/create", order, uuid)
        assert again == answers[0]
        assert await total_runs(a, b) == 1

        other = await b.ask("orders/create", {"item": "coffee"}, uuid)
        assert other["status"] == 409

        carol = await open_peer(two, "carol")
        try:
            hers = await carol.ask("orders/create", order, uuid)
            assert hers["status"] == 201
            assert await total_runs(a, b) == 2
        finally:
            await carol.close()
    finally:
        await a.close()
        await b.close()


async def test_presence_across_workers_and_a_killed_worker_expires(
    workers: list[Worker],
) -> None:
    """Members on both workers are listed; SIGKILL one and its members expire."""
    one, two = workers
    ada, bob = await open_peer(one), await open_peer(two, "bob")
    try:
        await ada.ask("room/join", {"room": "lobby"})
        await bob.ask("room/join", {"room": "lobby"})
        members = (await bob.ask("room/who", {"room": "lobby"}))["payload"]
        assert sorted(m["name"] for m in members.values()) == ["ada", "bob"]

        def bob_joined() -> list[dict[str, Any]]:
            return [
                p
                for p in ada.pushes
                if p["headers"] == {"presence": "join"} and p["payload"]["info"] == {"name": "bob"}
            ]

        async with asyncio.timeout(TIMEOUT):
            while not bob_joined():
                ada.pushes.append(orjson.loads(await ada.ws.recv()))
        assert bob_joined()[0]["route"] == "room:lobby"
        assert bob_joined()[0]["payload"]["member"] in members

        one.proc.send_signal(signal.SIGKILL)
        one.proc.wait(10)
        async with asyncio.timeout(TIMEOUT + 3 * PRESENCE_TTL):
            while True:
                members = (await bob.ask("room/who", {"room": "lobby"}))["payload"]
                if [m["name"] for m in members.values()] == ["bob"]:
                    break
                await asyncio.sleep(50 * MS)

        await bob.ask("room/leave", {"room": "lobby"})
        assert (await bob.ask("room/who", {"room": "lobby"}))["payload"] == {}
    finally:
        await bob.close()
