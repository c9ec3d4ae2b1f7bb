"""A bounded soak: many connections, a mix of good, malformed and oversized frames, and
clients that vanish mid-request, against a real uvicorn server in this process.

Scale: client and server share one process (and its GIL). On 2 cores, 50 connections x
1,000 requests took 24 s and 50 x 2,000 ran past a minute, so the suite's default is
50 connections x 400 requests (20,000 frames, about 10 s); `OBSERVABLE_SOCKET_SOAK_REQUESTS`
and `OBSERVABLE_SOCKET_SOAK_CONNECTIONS` scale it (give pytest's
`--timeout` room for more). Afterwards the server's task count and the router's registry
must be back to their starting values, every well-formed request on a connection that stayed
open must have had exactly one answer, and the process's resident memory (client and server:
one process) may not have grown by more than `RSS_BOUND_MB` once the clients' own records
are dropped.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
from collections import Counter
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from observable_socket_asgi import SocketRouter
from tests.helpers import MS, TIMEOUT, eventually_sync, request, running

CONNECTIONS = int(os.environ.get("OBSERVABLE_SOCKET_SOAK_CONNECTIONS", "50"))
REQUESTS = int(os.environ.get("OBSERVABLE_SOCKET_SOAK_REQUESTS", "400"))
BATCH = 20
MAX_BYTES = 8 * 1024
#: growth allowed for the whole process (client and server) across the soak
RSS_BOUND_MB = 16
#: share of connections that leave mid-request (half close, half drop the TCP connection)
VANISHING = 0.2


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def soak_router() -> SocketRouter:
    router = SocketRouter(max_message_bytes=MAX_BYTES, max_in_flight=32)

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(payload * MS)
        return {"payload": payload}

    return router


class Client:
    """One soak connection: sends batches, reads until each batch is fully answered."""

    def __init__(self, index: int, url: str, rng: random.Random, requests: int) -> None:
        self.index = index
        self.requests = requests
        self.url = url
        self.rng = rng
        self.expected: dict[str, int] = {}
        self.answers: Counter[str] = Counter()
        self.anonymous_sent = 0
        self.anonymous_got = 0
        self.vanish_at = rng.randrange(requests) if rng.random() < VANISHING else None
        self.stayed_open = self.vanish_at is None

    def frame(self, n: int) -> str:
        uuid = f"{self.index}-{n}"
        roll = self.rng.random()
        if roll < 0.65:
            self.expected[uuid] = 200
            return request("echo", {"n": n, "fill": "x" * self.rng.randrange(64)}, uuid=uuid)
        if roll < 0.80:
            self.expected[uuid] = 200
            return request("slow", self.rng.randrange(3), uuid=uuid)
        if roll < 0.88:
            self.anonymous_sent += 1
            return self.rng.choice(["not json", "[1, 2]", '{"route": "echo"}', "{"])
        if roll < 0.94:
            self.expected[uuid] = 413
            return request("echo", "y" * (MAX_BYTES + 1), uuid=uuid)
        self.expected[uuid] = 404
        return request("nowhere", uuid=uuid)

    def outstanding(self) -> int:
        waiting = sum(1 for uuid in self.expected if self.answers[uuid] == 0)
        return waiting + self.anonymous_sent - self.anonymous_got

    def take(self, text: str | bytes) -> bool:
        """Record one answer; return True if it was the PONG."""
        reply = orjson.loads(text)
        uuid = reply["uuid"]
        if reply.get("route") == "PONG":
            return True
        if uuid is None:
            assert reply["status"] == 400, reply
            self.anonymous_got += 1
            assert self.anonymous_got <= self.anonymous_sent, "more errors than bad frames"
            return False
        assert uuid in self.expected, f"answer for a uuid never sent: {reply}"
        assert reply["status"] == self.expected[uuid], reply
        self.answers[uuid] += 1
        assert self.answers[uuid] == 1, f"two answers for {uuid}"
        return False

    async def run(self) -> None:
        try:
            async with connect(self.url, ping_interval=None, max_size=None) as ws:
                n = 0
                while n < self.requests:
                    if self.vanish_at is not None and n >= self.vanish_at:
                        await self.vanish(ws, n)
                        return
                    for _ in range(BATCH):
                        await ws.send(self.frame(n))
                        n += 1
                    while self.outstanding():
                        self.take(await asyncio.wait_for(ws.recv(), TIMEOUT))
                # a final PING: anything still in the pipe would arrive before its PONG
                await ws.send(request("PING", {}, uuid=f"ping-{self.index}"))
                while not self.take(await asyncio.wait_for(ws.recv(), TIMEOUT)):
                    pass
                assert self.outstanding() == 0
        except ConnectionClosed:
            if self.stayed_open:
                raise

    async def vanish(self, ws: Any, n: int) -> None:
        """Leave with requests in flight, by a close frame or by dropping the TCP connection."""
        for k in range(5):
            await ws.send(request("slow", 20, uuid=f"{self.index}-gone-{n + k}"))
        if self.rng.random() < 0.5:
            ws.transport.abort()
        else:
            await ws.close()


def server_tasks() -> int:
    return len(asyncio.all_tasks())


@pytest.mark.soak
@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_soak_mixed_traffic_and_vanishing_clients() -> None:
    """Mixed frames from many clients, some vanishing mid-request: nothing leaks."""
    app = soak_router()
    rng = random.Random(20240607)

    async def scenario(url: str, requests: int) -> list[Client]:
        clients = [
            Client(i, url, random.Random(rng.random()), requests) for i in range(CONNECTIONS)
        ]
        await asyncio.gather(*(client.run() for client in clients))
        return clients

    def check(clients: list[Client]) -> tuple[int, int]:
        """Verify the answers; return (connections that stayed open, that vanished)."""
        stayed = [client for client in clients if client.stayed_open]
        for client in stayed:
            assert all(client.answers[uuid] == 1 for uuid in client.expected)
            assert client.anonymous_got == client.anonymous_sent
        return len(stayed), len(clients) - len(stayed)

    with running(app) as server:
        # Warm-up at full width: first-use allocations (imports, caches, buffers for this
        # many sockets) are not growth; what the real run adds on top is.
        check(asyncio.run(scenario(server.url, 2 * BATCH)))
        eventually_sync(server, lambda: len(app.connections), 0, within=2 * TIMEOUT)
        gc.collect()
        start_tasks = server.call(server_tasks)
        start_rss = rss_bytes()

        stayed, vanished = check(asyncio.run(scenario(server.url, REQUESTS)))

        eventually_sync(server, lambda: len(app.connections), 0, within=2 * TIMEOUT)
        eventually_sync(server, server_tasks, start_tasks, within=2 * TIMEOUT)
        gc.collect()
        growth = rss_bytes() - start_rss

    assert stayed and vanished  # both kinds really happened
    assert growth < RSS_BOUND_MB * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB"
