"""The in-process TestClient: same API as the real client, no network, bounded waits."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.client import ConnectionClosed, RequestTimeout
from observable_socket_asgi.testing import HandshakeRejected, TestClient
from tests.helpers import MS, PROCESS_TIMEOUT


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


async def test_ping_and_a_failing_send(caplog: pytest.LogCaptureFixture) -> None:
    """request("PING") returns the PONG; send()'s 404 is logged as a warning, not lost."""
    async with TestClient(make_router()) as client:
        res = await client.request("PING")
        assert res.ok and res.payload is None
        await client.send("log/event", {"x": 1})
        await client.request("echo", 1)  # answered after the send's 404
    [record] = [r for r in caplog.records if r.name == "observable_socket_asgi.testing"]
    assert record.levelno == logging.WARNING and "'log/event' was answered 404" in record.message
    assert record.route == "log/event"  # type: ignore[attr-defined]


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


async def broken(scope: Any, receive: Any, send: Any) -> None:
    """An app that has no lifespan and crashes on the first frame after accepting."""
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan")
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    raise ValueError("boom")


async def test_app_error_is_reported() -> None:
    """An app that crashes fails the test with its exception, not a hang."""
    with pytest.raises(AssertionError, match="boom"):
        async with TestClient(broken, timeout=500 * MS) as client:
            await client.request("anything")


# The blocking face: plain `def` tests, the app on a loop of its own


def test_blocking_client_in_a_plain_def_test() -> None:
    """`with TestClient(app)` answers, pushes and runs the lifespan without an async test."""
    with TestClient(make_router(), headers={"token": "abc"}) as client:
        portal = client.portal
        res = client.request("math/sum", [1, 2, 3])
        assert res.ok and res.payload == {"sum": 6, "started": ["up"]}
        assert client.request("echo", 5).headers == {"token": "abc"}  # a sync handler
        client.send("echo", "ignored")
        assert client.request("subscribe", 2).status == 201
        assert [push.payload for push in (client.next_push(), client.next_push())] == [
            {"n": 0},
            {"n": 1},
        ]
        with pytest.raises(RequestTimeout, match="no answer to request 'slow'"):
            client.request("slow", 10_000 * MS, timeout=50 * MS)
        with pytest.raises(ConnectionClosed):
            client.request("bye")
        assert client.wait_closed() == 1001 and client.closed
        assert list(client.pushes()) == []
    # the portal's loop is closed and its thread gone
    assert portal.loop.is_closed()
    assert not any(t.name == "observable-socket-portal" for t in threading.enumerate())


def test_blocking_client_refusal_and_app_errors() -> None:
    """A 1008 refusal is a close code; a crashing app fails the block with its exception."""
    with TestClient(make_router(access_logic=lambda ws: False)) as client:
        assert client.wait_closed() == 1008

    with pytest.raises(AssertionError, match="boom"):
        with TestClient(broken, timeout=500 * MS) as client:
            client.request("anything")


def test_blocking_client_handshake_rejected() -> None:
    """An app that closes before accepting raises HandshakeRejected from `with`."""

    async def reject(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await receive()
        await send({"type": "websocket.close", "code": 1013, "reason": "later"})

    with pytest.raises(HandshakeRejected):
        with TestClient(reject):
            pass  # pragma: no cover - never entered


USER_APP = """
from observable_socket_asgi import SocketRouter, Status

def access_logic(ws) -> bool:
    return ws.query_params.get("token") == "abc"

router = SocketRouter(access_logic)

@router.route("math/sum")
async def sum_handler(ws, headers, payload):
    return {"status": Status.OK, "payload": {"sum": sum(payload or [])}}
"""

USER_TESTS = """
import pytest
from observable_socket_asgi.testing import TestClient
from app import router

def test_sum():
    with TestClient(router, query_string="token=abc") as client:
        res = client.request("math/sum", [1, 2, 3])
        assert res.ok and res.payload == {"sum": 6}

def test_refused_without_token():
    with TestClient(router) as client:
        assert client.wait_closed() == 1008

@pytest.mark.observable_socket
async def test_sum_async():
    async with TestClient(router, query_string="token=abc") as client:
        res = await client.request("math/sum", [1, 2, 3])
        assert res.ok and res.payload == {"sum": 6}

@pytest.mark.observable_socket
async def test_refused_with_a_wrong_token():
    async with TestClient(router, query_string="token=wrong") as client:
        assert await client.wait_closed() == 1008

@pytest.mark.observable_socket
async def test_this_one_fails():
    async with TestClient(router, query_string="token=abc") as client:
        res = await client.request("math/sum", [1, 2, 3])
        assert res.payload == {"sum": 7}
"""


HIDDEN = ("uvicorn", "websockets", "fastapi", "starlette", "redis", "anyio")


def test_user_tests_run_under_plain_pytest(tmp_path: Path) -> None:
    """A user's test file, public API only, runs under a bare pytest with the core alone.

    No suite conftest, no async plugin (anyio's is turned off), and the server, client,
    FastAPI and Redis packages hidden: plain `def` tests use the blocking face, marked
    `async def` tests run through the package's own pytest plugin, and a failing assertion
    fails (so the run is real).
    """
    (tmp_path / "app.py").write_text(USER_APP)
    (tmp_path / "test_app.py").write_text(USER_TESTS)
    code = f"""
import sys

class Hide:
    # a package that is not installed: its import fails (sys.modules[name] = None would
    # trip pytest's plugin scan)
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {HIDDEN!r}:
            raise ImportError(f"No module named {{name!r}}")

sys.meta_path.insert(0, Hide())
import pytest
raise SystemExit(pytest.main(["-p", "no:anyio", "-p", "no:cacheprovider", "-rA"]))
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(tmp_path)},
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr  # one test fails, on purpose
    assert "4 passed" in out and "1 failed" in out, out
    assert "FAILED test_app.py::test_this_one_fails" in out
    assert "not natively supported" not in out
