"""Real uvicorn on 127.0.0.1 and a real `websockets` client, over each uvicorn ws implementation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from observable_socket_asgi import BadRequest, SocketRouter, Status
from tests.helpers import (
    JS_FRAME,
    JS_PING,
    TIMEOUT,
    Server,
    eventually,
    on_server,
    request,
)

pytestmark = pytest.mark.e2e


def make_router(**options: Any) -> SocketRouter:
    """The README quickstart plus the routes the end-to-end tests need."""
    router = SocketRouter(**options)
    router.state = {"started": [], "cancelled": [], "release": None}  # type: ignore[attr-defined]

    @router.route("math/sum")
    async def sum_handler(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"status": Status.OK, "payload": {"sum": sum(payload or [])}}

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("hold")
    async def hold(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        state = router.state  # type: ignore[attr-defined]
        if state["release"] is None:
            state["release"] = asyncio.Event()
        state["started"].append(payload)
        try:
            await state["release"].wait()
        except asyncio.CancelledError:
            state["cancelled"].append(payload)
            raise
        return {"payload": "released"}

    return router


def task_count() -> int:
    return len(asyncio.all_tasks())


async def ask(ws: Any, frame: str) -> dict[str, Any]:
    await ws.send(frame)
    async with asyncio.timeout(TIMEOUT):
        reply: dict[str, Any] = orjson.loads(await ws.recv())
    return reply


@contextlib.contextmanager
def error_logs() -> Iterator[list[logging.LogRecord]]:
    """Collect error-level records from the router, asyncio and uvicorn (which does not
    propagate to the root logger), from any thread."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.ERROR)
    names = ["", "uvicorn", "uvicorn.error", "asyncio", "observable_socket_asgi"]
    loggers = [logging.getLogger(name) for name in names]
    for log in loggers:
        log.addHandler(handler)
    try:
        yield records
    finally:
        for log in loggers:
            log.removeHandler(handler)


async def test_readme_quickstart(serve: Any) -> None:
    """The README's math/sum route answers over a real socket."""
    server = serve(make_router())
    async with connect(server.url) as ws:
        assert await ask(ws, request("math/sum", [1, 2, 3], uuid=1)) == {
            "uuid": 1,
            "status": 200,
            "headers": {},
            "payload": {"sum": 6},
        }


async def test_data_check_says_why_through_bad_request(serve: Any) -> None:
    """A data_check that raises BadRequest answers its status and reason on a real socket; one
    that returns False still answers the generic 400; neither logs an error."""
    router = SocketRouter()

    def check(message: Any) -> bool:
        if not isinstance(message.payload, int):
            raise BadRequest(f"payload must be an integer, got {type(message.payload).__name__}")
        return bool(message.payload >= 0)

    @router.route("square", options={"data_check": check})
    async def square(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload * payload}

    server = serve(router)
    with error_logs() as errors:
        async with connect(server.url) as ws:
            said = await ask(ws, request("square", "3", uuid=1))
            assert (said["status"], said["payload"]) == (
                400,
                {"message": "payload must be an integer, got str"},
            )
            plain = await ask(ws, request("square", -1, uuid=2))
            assert plain["payload"] == {"message": "data check failed for route square"}
            assert (await ask(ws, request("square", 3, uuid=3)))["payload"] == 9
    assert errors == []


async def test_js_client_frames(serve: Any) -> None:
    """The JS client's own frames get the answers it expects: its uuid back, and PONG."""
    server = serve(make_router())
    async with connect(server.url) as ws:
        reply = await ask(ws, JS_FRAME)
        assert reply == {
            "uuid": "a5e4e2e8-35c2-4b34-b40b-71faaf341206",
            "status": 200,
            "headers": {},
            "payload": {"sum": 10},
        }
        pong = await ask(ws, JS_PING)
        assert (pong["uuid"], pong["route"], pong["status"]) == (
            "12417fc9-fd23-4930-ac51-dab24404fea6",
            "PONG",
            200,
        )


async def test_500_pipelined_requests_each_answered_once(serve: Any) -> None:
    """500 requests sent back to back on one connection are each answered exactly once."""
    server = serve(make_router())
    async with connect(server.url) as ws:
        for i in range(500):
            await ws.send(request("echo", i, uuid=i if i % 2 else f"s{i}"))
        seen: dict[Any, Any] = {}
        async with asyncio.timeout(TIMEOUT * 2):
            for _ in range(500):
                reply = orjson.loads(await ws.recv())
                assert reply["uuid"] not in seen
                seen[reply["uuid"]] = reply["payload"]
        assert seen == {(i if i % 2 else f"s{i}"): i for i in range(500)}
        # nothing more arrives: a PING round trip proves the stream is drained
        assert (await ask(ws, JS_PING))["route"] == "PONG"


async def test_slow_request_overtaken_by_fast_one_and_pong(serve: Any) -> None:
    """A blocked request does not delay a later fast request or a PONG."""
    router = make_router()
    server = serve(router)
    async with connect(server.url) as ws:
        await ws.send(request("hold", "slow", uuid="slow"))
        assert (await ask(ws, request("echo", 1, uuid="fast")))["uuid"] == "fast"
        assert (await ask(ws, JS_PING))["route"] == "PONG"
        await on_server(server, lambda: router.state["release"].set())  # type: ignore[attr-defined]
        async with asyncio.timeout(TIMEOUT):
            assert orjson.loads(await ws.recv())["uuid"] == "slow"


async def test_access_logic_close_1008_seen_by_client(serve: Any) -> None:
    """A refused connection reaches the client as a close with code 1008 and a reason."""
    server = serve(make_router(access_logic=lambda ws: ws.query_params.get("token") == "ok"))
    async with connect(server.url + "/?token=no") as ws:
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(TIMEOUT):
                await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008 and info.value.rcvd.reason
    async with connect(server.url + "/?token=ok") as ws:
        assert (await ask(ws, request("echo", 1)))["payload"] == 1


async def test_disconnect_mid_request_leaves_nothing(serve: Any) -> None:
    """A client leaving mid-request cancels its handler; connections and tasks drop to baseline."""
    router = make_router()
    server = serve(router)
    baseline = await on_server(server, task_count)
    async with connect(server.url) as ws:
        for i in range(3):
            await ws.send(request("hold", i, uuid=i))
        await eventually(server, lambda: len(router.state["started"]), 3)  # type: ignore[attr-defined]
        assert await on_server(server, lambda: len(router.connections)) == 1
    await eventually(server, lambda: len(router.connections), 0)
    await eventually(server, task_count, baseline)
    assert sorted(router.state["cancelled"]) == [0, 1, 2]  # type: ignore[attr-defined]


async def test_connect_disconnect_cycles_leave_nothing(serve: Any) -> None:
    """200 connect/disconnect cycles, 10 at a time, leave no connection and no task behind."""
    router = make_router()
    server = serve(router)
    baseline = await on_server(server, task_count)

    async def cycle(n: int) -> None:
        async with connect(server.url) as ws:
            if n % 2:
                assert (await ask(ws, request("echo", n, uuid=n)))["payload"] == n
            if n % 5 == 0:
                await ws.send(request("hold", n, uuid=n))  # left in flight on purpose

    async def worker(start: int) -> None:
        for n in range(start, 200, 10):
            await cycle(n)

    async with asyncio.timeout(TIMEOUT * 6):
        await asyncio.gather(*(worker(k) for k in range(10)))
    await eventually(server, lambda: len(router.connections), 0)
    await eventually(server, task_count, baseline)


async def test_server_shutdown_closes_1012_without_errors(ws_impl: str) -> None:
    """Stopping uvicorn closes open sockets with 1012, cancels handlers and logs no error."""
    router = make_router()
    with error_logs() as errors:
        server = Server(router, ws=ws_impl)
        server.start()
        try:
            async with connect(server.url) as ws:
                await ws.send(request("hold", "x", uuid=1))
                await eventually(server, lambda: len(router.state["started"]), 1)  # type: ignore[attr-defined]
                stopper = threading.Thread(target=server.stop)
                stopper.start()
                with pytest.raises(ConnectionClosed) as info:
                    async with asyncio.timeout(TIMEOUT):
                        await ws.recv()
                await asyncio.to_thread(stopper.join, TIMEOUT)
                assert not stopper.is_alive()
        finally:
            server.stop()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    assert router.state["cancelled"] == ["x"]  # type: ignore[attr-defined]
    assert router.connections == set()
    assert [r.getMessage() for r in errors] == []
