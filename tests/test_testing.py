"""The in-process TestClient: same API as the real client, no network, bounded waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.client import ConnectionClosed, RequestTimeout
from observable_socket_asgi.testing import TestClient
from tests.helpers import MS


def make_router(**options: Any) -> SocketRouter:
    router = SocketRouter(**options)
    started: list[str] = []
    router.on_startup(lambda: started.append("up"))

    @router.route("math/sum")
    async def total(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": {"sum": sum(payload), "started": started}}

    @router.route("echo")
    def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"headers": headers, "payload": payload}

    @router.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(payload)
        return {}

    @router.route("subscribe")
    async def subscribe(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        for n in range(payload):
            await ws.push("ticks", {"n": n})
        return {"status": 201}

    @router.route("bye")
    async def bye(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await ws.close(1001, "bye")
        return {}

    return router


async def test_request_with_headers_and_lifespan() -> None:
    """Answers arrive by uuid, headers merge (per call wins), and lifespan startup ran."""
    async with TestClient(make_router(), headers={"token": "abc", "lang": "en"}) as client:
        res = await client.request("math/sum", [1, 2, 3])
        assert res.ok and res.payload == {"sum": 6, "started": ["up"]}
        res = await client.request("echo", [], headers={"lang": "fr"})
        assert res.headers == {"token": "abc", "lang": "fr"} and res.payload == []
        res = await client.request("missing")
        assert res.status == 404


async def test_concurrent_requests_and_send() -> None:
    """Many requests at once each get their answer; send()'s answer is not a push."""
    async with TestClient(make_router()) as client:
        await client.send("echo", "ignored")
        results = await asyncio.gather(*(client.request("echo", n) for n in range(50)))
        assert [r.payload for r in results] == list(range(50))
        await client.request("subscribe", 1)
        push = await client.next_push()
        assert push.payload == {"n": 0}


async def test_pushes_iterate_in_order() -> None:
    """pushes() yields what the app pushed, in order."""
    async with TestClient(make_router()) as client:
        assert (await client.request("subscribe", 3)).status == 201
        seen = []
        async for push in client.pushes():
            seen.append(push.payload["n"])
            if len(seen) == 3:
                break
        assert seen == [0, 1, 2]


async def test_stuck_handler_fails_with_a_clear_message() -> None:
    """A request without an answer fails the test by its timeout, naming the route."""
    async with TestClient(make_router(), timeout=50 * MS) as client:
        with pytest.raises(RequestTimeout, match="no answer to request 'slow'"):
            await client.request("slow", 10_000 * MS)
        with pytest.raises(AssertionError, match="no push arrived within"):
            await client.next_push()


async def test_app_closing_the_socket() -> None:
    """When the app closes, the close code is kept and later requests fail."""
    async with TestClient(make_router()) as client:
        with pytest.raises(ConnectionClosed):
            await client.request("bye")
        assert await client.wait_closed() == 1001
        assert client.close_reason == "bye"
        with pytest.raises(ConnectionClosed):
            await client.request("echo", 1)


async def test_refused_connection_closes_1008() -> None:
    """access_logic saying no shows as close code 1008."""
    async with TestClient(make_router(access_logic=lambda ws: False)) as client:
        assert await client.wait_closed() == 1008


async def test_handshake_headers_reach_the_app() -> None:
    """Handshake headers and the query string are in the scope the app sees."""
    router = SocketRouter()

    @router.route("who")
    async def who(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": [ws.headers.get("authorization"), ws.query_params.get("room")]}

    async with TestClient(
        router, handshake_headers={"Authorization": "Bearer x"}, query_string="room=7"
    ) as client:
        assert (await client.request("who")).payload == ["Bearer x", "7"]


async def test_app_error_is_reported() -> None:
    """An app that crashes fails the test with its exception, not a hang."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise ValueError("boom")

    with pytest.raises(AssertionError, match="boom"):
        async with TestClient(broken, timeout=500 * MS) as client:
            await client.request("anything")
