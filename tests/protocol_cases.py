"""Protocol checks shared by every way of serving a router: the core app, FastAPI, Starlette.

Each case is `async def case_...(connect)`, where `connect(path="")` is an async context
manager yielding a connected `websockets` client to a server whose router has had
`install_routes()` applied. A suite runs them with `pytest.mark.parametrize("case", CASES)`,
so the wire contract of PROTOCOL.md is written once and checked through every mount.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from observable_socket_asgi import SocketRouter
from tests.helpers import JS_FRAME, JS_PING, MS, TIMEOUT, request

__all__ = ["CASES", "Connect", "install_routes"]

Connect = Callable[..., AbstractAsyncContextManager[ClientConnection]]


def install_routes(
    router: SocketRouter, connection_of: Callable[[Any], Any] = lambda ws: ws
) -> None:
    """Register the routes the cases call.

    Args:
        connection_of: `ws` -> the object with `push()`; the core passes `ws` itself, the
            FastAPI adapter `ws.state.observable`.
    """

    @router.route("math/sum")
    async def sum_handler(ws: Any, headers: Any, payload: Any) -> Any:
        return {"status": 200, "payload": {"sum": sum(payload or [])}}

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> Any:
        return {"headers": headers, "payload": payload}

    @router.route("sync/echo")
    def sync_echo(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": payload}

    @router.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> Any:
        await asyncio.sleep(float(payload))
        return {"payload": "slow"}

    @router.route("boom")
    async def boom(ws: Any, headers: Any, payload: Any) -> Any:
        raise RuntimeError("secret detail")

    @router.route("not-a-result")
    async def not_a_result(ws: Any, headers: Any, payload: Any) -> Any:
        return "nope"

    @router.route(
        "guarded",
        options={
            "data_check": lambda message: message.payload != "bad",
            "access": lambda ws, message: message.headers.get("token") == "abc",
            "dehydrate": lambda payload: {"dehydrated": payload},
        },
    )
    async def guarded(local: dict[str, Any]) -> Any:
        return {"status": 201, "payload": "ok"}

    @router.route("handshake")
    async def handshake(ws: Any, headers: Any, payload: Any) -> Any:
        return {
            "payload": {
                "header": ws.headers.get("x-test"),
                "query": dict(ws.query_params),
                "cookies": dict(ws.cookies),
                "user": ws.scope.get("user"),
            }
        }

    @router.route("push-me")
    async def push_me(ws: Any, headers: Any, payload: Any) -> Any:
        await connection_of(ws).push("news", {"n": payload})
        return {"payload": "pushed"}


async def _ask(ws: ClientConnection, frame: str | bytes) -> dict[str, Any]:
    await ws.send(frame)
    return await _next(ws)


async def _next(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        data = await ws.recv()
    result: dict[str, Any] = orjson.loads(data)
    return result


async def case_js_frame_is_answered(connect: Connect) -> None:
    """The JS client's own frame gets its uuid back, same type, with the handler's result."""
    async with connect() as ws:
        reply = await _ask(ws, JS_FRAME)
    assert reply == {
        "uuid": "a5e4e2e8-35c2-4b34-b40b-71faaf341206",
        "status": 200,
        "headers": {},
        "payload": {"sum": 10},
    }


async def case_ping_gets_pong(connect: Connect) -> None:
    """PING is answered with PONG echoing the uuid."""
    async with connect() as ws:
        reply = await _ask(ws, JS_PING)
    assert reply == {
        "uuid": "12417fc9-fd23-4930-ac51-dab24404fea6",
        "route": "PONG",
        "status": 200,
        "headers": {},
        "payload": None,
    }


async def case_pong_overtakes_busy_handler(connect: Connect) -> None:
    """A PING sent behind a slow request is answered first; the slow one still answers."""
    async with connect() as ws:
        await ws.send(request("slow", 200 * MS, uuid="slow"))
        await ws.send(JS_PING)
        first, second = await _next(ws), await _next(ws)
    assert first["route"] == "PONG"
    assert second["uuid"] == "slow" and second["payload"] == "slow"


async def case_integer_uuid_and_aliases(connect: Connect) -> None:
    """Integer uuids stay integers; `track_id` and `path` are accepted aliases."""
    async with connect() as ws:
        reply = await _ask(ws, request("math/sum", [1, 2], uuid=7))
        assert (reply["uuid"], reply["payload"]) == (7, {"sum": 3})
        reply = await _ask(ws, orjson.dumps({"track_id": 8, "path": "echo", "payload": 1}))
        assert (reply["uuid"], reply["payload"]) == (8, 1)


async def case_falsy_payloads_arrive_as_sent(connect: Connect) -> None:
    """0, false, "", [] and {} reach the handler unchanged; an absent payload is null."""
    async with connect() as ws:
        values: tuple[object, ...] = (0, False, "", [], {})
        for value in values:
            reply = await _ask(ws, request("echo", value))
            assert reply["payload"] == value and type(reply["payload"]) is type(value)
        reply = await _ask(ws, '{"uuid": 1, "route": "echo"}')
        assert reply == {"uuid": 1, "status": 200, "headers": {}, "payload": None}
        reply = await _ask(ws, request("sync/echo", 0))
        assert reply["payload"] == 0


async def case_bad_frames_are_answered(connect: Connect) -> None:
    """Not JSON, not an object, no route, unknown route: 400/400/400/404, connection kept."""
    async with connect() as ws:
        reply = await _ask(ws, "not json")
        assert (reply["status"], reply["uuid"]) == (400, None)
        assert isinstance(reply["payload"]["message"], str)
        reply = await _ask(ws, "[1, 2]")
        assert (reply["status"], reply["uuid"]) == (400, None)
        reply = await _ask(ws, '{"uuid": "u1", "payload": 1}')
        assert (reply["status"], reply["uuid"]) == (400, "u1")
        reply = await _ask(ws, request("nowhere", uuid="u2"))
        assert reply == {
            "uuid": "u2",
            "status": 404,
            "headers": {},
            "payload": {"message": "route not found: nowhere"},
        }
        assert (await _ask(ws, request("math/sum", [1])))["payload"] == {"sum": 1}


async def case_binary_frame_is_accepted(connect: Connect) -> None:
    """A binary frame holding UTF-8 JSON is served like a text frame, answered in text."""
    async with connect() as ws:
        await ws.send(request("math/sum", [2, 3]).encode())
        async with asyncio.timeout(TIMEOUT):
            data = await ws.recv()
    assert isinstance(data, str)
    assert orjson.loads(data)["payload"] == {"sum": 5}


async def case_failures_are_500_without_detail(connect: Connect) -> None:
    """A raising handler or a non-result gives 500 "internal server error", nothing more."""
    async with connect() as ws:
        for route in ("boom", "not-a-result"):
            reply = await _ask(ws, request(route, uuid=route))
            assert reply == {
                "uuid": route,
                "status": 500,
                "headers": {},
                "payload": {"message": "internal server error"},
            }
        assert (await _ask(ws, request("echo", 1)))["payload"] == 1


async def case_hooks_run_in_order(connect: Connect) -> None:
    """data_check false -> 400, access false -> 403, else the handler and dehydrate on 2xx."""
    async with connect() as ws:
        assert (await _ask(ws, request("guarded", "bad", headers={"token": "abc"})))[
            "status"
        ] == 400
        assert (await _ask(ws, request("guarded", "x", headers={"token": "no"})))["status"] == 403
        reply = await _ask(ws, request("guarded", "x", headers={"token": "abc"}))
    assert (reply["status"], reply["payload"]) == (201, {"dehydrated": "ok"})


async def case_answers_leave_in_completion_order(connect: Connect) -> None:
    """A fast request sent after a slow one is answered first: correlation is by uuid."""
    async with connect() as ws:
        await ws.send(request("slow", 200 * MS, uuid="slow"))
        await ws.send(request("echo", "fast", uuid="fast"))
        first, second = await _next(ws), await _next(ws)
    assert [first["uuid"], second["uuid"]] == ["fast", "slow"]


async def case_handshake_is_visible(connect: Connect) -> None:
    """Handlers read the handshake's headers, query string and cookies through `ws`."""
    async with connect(
        "?a=1&b=two", additional_headers={"X-Test": "yes", "Cookie": "session=s1; theme=dark"}
    ) as ws:
        reply = await _ask(ws, request("handshake"))
    payload = reply["payload"]
    assert payload["header"] == "yes"
    assert payload["query"] == {"a": "1", "b": "two"}
    assert payload["cookies"] == {"session": "s1", "theme": "dark"}


async def case_push_reaches_the_client(connect: Connect) -> None:
    """A handler's push arrives as an unasked message with a server uuid, then the answer."""
    async with connect() as ws:
        await ws.send(request("push-me", 5, uuid="req"))
        push, reply = await _next(ws), await _next(ws)
    assert push["route"] == "news" and push["payload"] == {"n": 5} and push["status"] == 200
    assert push["uuid"] != "req"
    assert reply["uuid"] == "req" and reply["payload"] == "pushed"


CASES: list[Callable[[Connect], Awaitable[None]]] = [
    case_js_frame_is_answered,
    case_ping_gets_pong,
    case_pong_overtakes_busy_handler,
    case_integer_uuid_and_aliases,
    case_falsy_payloads_arrive_as_sent,
    case_bad_frames_are_answered,
    case_binary_frame_is_accepted,
    case_failures_are_500_without_detail,
    case_hooks_run_in_order,
    case_answers_leave_in_completion_order,
    case_handshake_is_visible,
    case_push_reaches_the_client,
]


def connector(base_url: str) -> Connect:
    """A `connect(suffix="", **options)` for a server at `base_url` (ws://host:port/path)."""
    from contextlib import asynccontextmanager

    from websockets.asyncio.client import connect as ws_connect

    @asynccontextmanager
    async def connect(suffix: str = "", **options: Any) -> AsyncIterator[ClientConnection]:
        async with asyncio.timeout(TIMEOUT):
            client = await ws_connect(base_url + suffix, open_timeout=TIMEOUT, **options)
        try:
            yield client
        finally:
            await client.close()

    return connect
