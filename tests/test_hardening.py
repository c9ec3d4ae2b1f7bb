"""Hardening at the edge: origin checks, connection limits, rate limits, idle and handler timeouts.

Each option is tested in-process over `ApplicationCommunicator`, then once end to end over a
real uvicorn server with a real `websockets` client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.server.handshake import origin_allowed
from tests.helpers import (
    JS_PING,
    MS,
    TIMEOUT,
    Conversation,
    conversation,
    echo_router,
    eventually_sync,
    request,
    running,
    wait_until,
    ws_scope,
)


def scope_with_origin(origin: str | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return ws_scope(headers=headers)


async def denied(app: Any, scope: dict[str, Any]) -> dict[str, Any]:
    """Connect and return the close that refuses the handshake before accept."""
    conv = Conversation(app, scope)
    closing = await conv.connect()
    assert closing["type"] == "websocket.close", closing
    await conv.comm.wait(TIMEOUT)
    return closing


async def refused(app: Any, scope: dict[str, Any]) -> dict[str, Any]:
    """Connect and return the close message that follows the accept."""
    conv = Conversation(app, scope)
    accepted = await conv.connect()
    assert accepted["type"] == "websocket.accept", accepted
    closing = await conv.output()
    assert closing["type"] == "websocket.close", closing
    await conv.comm.wait(TIMEOUT)
    return closing


# Origin allow-list: the pure matcher


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        ("https://app.example.com", ("https://app.example.com",), True),
        ("HTTPS://App.Example.com", ("https://app.example.com/",), True),
        ("https://evil.example.net", ("https://app.example.com",), False),
        ("https://a.example.com", ("https://*.example.com",), True),
        ("https://a.b.example.com", ("https://*.example.com",), True),
        ("https://example.com", ("https://*.example.com",), False),
        ("http://a.example.com", ("https://*.example.com",), False),
        ("https://a.example.com:8443", ("https://*.example.com",), False),
        ("https://a.example.com:8443", ("https://*.example.com:8443",), True),
        ("https://evilexample.com", ("https://*.example.com",), False),
        ("https://a.example.com.evil.net", ("https://*.example.com",), False),
        ("https://evil.net/.example.com", ("https://*.example.com",), False),
        ("https://evil.net?.example.com", ("https://*.example.com",), False),
        ("http://a.example.com", ("*.example.com",), True),
        ("https://a.example.com", ("*.example.com",), True),
        ("https://anything.test", ("*",), True),
        ("null", ("https://app.example.com",), False),
        ("null", ("null",), True),
    ],
)
def test_origin_matcher(origin: str, allowed: tuple[str, ...], expected: bool) -> None:
    """Exact origins, `*.host` patterns that match whole DNS labels only, and `*`."""
    assert origin_allowed(origin, allowed) is expected


# Origin allow-list: in-process


async def test_allowed_origin_is_served() -> None:
    """A handshake from a listed origin is accepted and served."""
    app = echo_router(allowed_origins=["https://app.example.com", "https://*.example.org"])
    for origin in ("https://app.example.com", "https://x.example.org"):
        async with conversation(app, scope_with_origin(origin)) as conv:
            reply = await conv.ask(request("echo", 5, uuid="u"))
            assert reply["payload"] == 5


async def test_foreign_origin_is_closed_1008_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Another origin is accepted then closed 1008 "origin not allowed", logged with the origin."""
    app = echo_router(allowed_origins=["https://app.example.com"])
    with caplog.at_level(logging.WARNING, logger="observable_socket_asgi"):
        closing = await refused(app, scope_with_origin("https://evil.example.net"))
    assert closing["code"] == 1008
    assert closing["reason"] == "origin not allowed"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("https://evil.example.net" in r.getMessage() for r in warnings), caplog.text
    assert len(app.connections) == 0


async def test_no_origin_allowed_unless_required() -> None:
    """Non-browser clients send no Origin: served by default, refused with require_origin."""
    app = echo_router(allowed_origins=["https://app.example.com"])
    async with conversation(app, scope_with_origin(None)) as conv:
        assert (await conv.ask(request("echo", 1)))["status"] == 200
    strict = echo_router(allowed_origins=["https://app.example.com"], require_origin=True)
    closing = await refused(strict, scope_with_origin(None))
    assert closing["code"] == 1008
    async with conversation(strict, scope_with_origin("https://app.example.com")) as conv:
        assert (await conv.ask(request("echo", 1)))["status"] == 200


async def test_origin_refused_before_access_logic() -> None:
    """A cross-site handshake never reaches access_logic, so cookies are never checked for it."""
    calls: list[Any] = []

    def access_logic(ws: Any) -> bool:
        calls.append(ws)
        return True

    app = echo_router(access_logic=access_logic, allowed_origins=["https://app.example.com"])
    await refused(app, scope_with_origin("https://evil.example.net"))
    assert calls == []


async def test_slow_access_logic_is_refused_before_accept_after_handshake_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """access_logic past handshake_timeout: refused before accept (come back later), logged."""

    async def access_logic(ws: Any) -> bool:
        await asyncio.sleep(10 * TIMEOUT)
        return True

    app = echo_router(access_logic=access_logic, handshake_timeout=50 * MS)
    with caplog.at_level(logging.WARNING, logger="observable_socket_asgi"):
        closing = await denied(app, ws_scope())
    assert closing["code"] == 1013
    assert any("access_logic" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("suspends", [False, True])
async def test_access_logic_runs_in_the_connections_task_with_its_own_timeouts(
    suspends: bool,
) -> None:
    """Whether it answers at once or after waiting, access_logic runs in one task from
    start to end, so `asyncio.timeout()` inside it and `current_task()` behave as usual,
    and its answer decides the handshake."""
    tasks: list[asyncio.Task[Any] | None] = []

    async def access_logic(ws: Any) -> bool:
        tasks.append(asyncio.current_task())
        async with asyncio.timeout(TIMEOUT):
            if suspends:
                await asyncio.sleep(0)
            tasks.append(asyncio.current_task())
        return bool(ws.query_params.get("token") == "ok")

    app = echo_router(access_logic=access_logic, handshake_timeout=TIMEOUT)
    async with conversation(app, ws_scope(query_string=b"token=ok")) as conv:
        assert (await conv.ask(request("echo", 1)))["payload"] == 1
    assert len(tasks) == 2 and tasks[0] is not None and tasks[0] is tasks[1]
    closing = await refused(app, ws_scope(query_string=b"token=no"))
    assert (closing["code"], closing["reason"]) == (1008, "access denied")


def test_handshake_timeout_default_and_validation() -> None:
    """handshake_timeout defaults to 10 s, accepts None, and refuses nonsense."""
    assert SocketRouter().settings.handshake_timeout == 10.0
    assert SocketRouter(handshake_timeout=None).settings.handshake_timeout is None
    with pytest.raises(ValueError, match="handshake_timeout"):
        SocketRouter(handshake_timeout=0)


# Connection limit: in-process


async def test_max_connections_refuses_before_accept_and_frees_slots() -> None:
    """Past max_connections a handshake is refused before accept; a slot frees when a
    client leaves."""
    app = echo_router(max_connections=2)
    first, second = Conversation(app), Conversation(app)
    for conv in (first, second):
        assert (await conv.connect())["type"] == "websocket.accept"
    await wait_until(lambda: len(app.connections) == 2)
    closing = await denied(app, ws_scope())
    assert closing["code"] == 1013
    await first.disconnect()
    async with conversation(app) as third:
        assert (await third.ask(request("echo", 3)))["payload"] == 3
    await second.disconnect()
    assert len(app.connections) == 0


async def test_max_connections_exact_with_concurrent_handshakes() -> None:
    """Handshakes that overlap (a slow access_logic) cannot all pass the limit together."""
    gate = asyncio.Event()

    async def access_logic(ws: Any) -> bool:
        await gate.wait()
        return True

    app = echo_router(access_logic=access_logic, max_connections=2)
    convs = [Conversation(app) for _ in range(5)]
    for conv in convs:
        await conv.comm.send_input({"type": "websocket.connect"})
    await asyncio.sleep(20 * MS)  # let all five reach access_logic (or be refused)
    gate.set()
    outcomes: list[str] = []
    for conv in convs:
        first = await conv.output()
        if first["type"] == "websocket.accept":
            assert await conv.nothing(50 * MS)
            outcomes.append("served")
        else:
            assert (first["type"], first["code"]) == ("websocket.close", 1013)
            outcomes.append("refused")
    assert outcomes.count("served") == 2, outcomes
    assert len(app.connections) == 2
    for conv in convs:
        await conv.disconnect()
    assert (len(app.connections), app.registry.slots_taken) == (0, 0)


# Rate limit: in-process


async def test_rate_limit_answers_429_with_uuid_and_never_limits_ping() -> None:
    """Over the bucket a request gets 429 with its uuid; PINGs are always answered."""
    app = echo_router(rate_limit=(3, 60.0))
    async with conversation(app) as conv:
        for n in range(3):
            assert (await conv.ask(request("echo", n, uuid=n)))["status"] == 200
        over = await conv.ask(request("echo", 9, uuid="over-1"))
        assert over["status"] == 429 and over["uuid"] == "over-1"
        assert isinstance(over["payload"]["message"], str)
        for _ in range(20):
            pong = await conv.ask(JS_PING)
            assert pong["route"] == "PONG" and pong["status"] == 200
        assert (await conv.ask(request("echo", 1, uuid=7)))["status"] == 429


async def test_rate_limit_per_route_override() -> None:
    """A route's own `rate_limit` option counts in its own bucket, apart from the router's."""
    app = echo_router(rate_limit=(100, 60.0))

    @app.route("expensive", options={"rate_limit": (1, 60.0)})
    async def expensive(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": "done"}

    async with conversation(app) as conv:
        assert (await conv.ask(request("expensive", uuid=1)))["status"] == 200
        again = await conv.ask(request("expensive", uuid=2))
        assert (again["status"], again["uuid"]) == (429, 2)
        assert (await conv.ask(request("echo", 1, uuid=3)))["status"] == 200

    only_route = SocketRouter()

    @only_route.route("limited", options={"rate_limit": (1, 60.0)})
    async def limited(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {}

    async with conversation(only_route) as conv:
        assert (await conv.ask(request("limited", uuid=1)))["status"] == 200
        assert (await conv.ask(request("limited", uuid=2)))["status"] == 429


async def test_rate_limit_is_per_connection() -> None:
    """One client exhausting its bucket does not limit another."""
    app = echo_router(rate_limit=(1, 60.0))
    async with conversation(app) as a, conversation(app) as b:
        assert (await a.ask(request("echo", uuid=1)))["status"] == 200
        assert (await a.ask(request("echo", uuid=2)))["status"] == 429
        assert (await b.ask(request("echo", uuid=3)))["status"] == 200


def test_rate_limit_and_timeouts_are_validated() -> None:
    """Nonsense limits fail at construction or registration, naming the option."""
    for bad in ((0, 1.0), (1, 0), (1.5, 1.0), "x"):
        with pytest.raises(ValueError, match="rate_limit"):
            SocketRouter(rate_limit=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_timeout"):
        SocketRouter(idle_timeout=0)
    with pytest.raises(ValueError, match="handler_timeout"):
        SocketRouter(handler_timeout=-1)
    with pytest.raises(ValueError, match="max_connections"):
        SocketRouter(max_connections=0)
    router = SocketRouter()
    with pytest.raises(ValueError, match="timeout"):
        router.add_route("r", lambda value: {}, {"timeout": 0})


# Idle timeout: in-process


def test_idle_timeout_default_outlasts_js_heartbeat() -> None:
    """The JS client pings every 60 s, so a healthy socket must not be closed as idle."""
    idle = SocketRouter().settings.idle_timeout
    assert idle is not None and idle > 60


async def test_idle_connection_is_closed_1001() -> None:
    """No frame at all for `idle_timeout` closes the connection with 1001."""
    app = echo_router(idle_timeout=80 * MS)
    conv = Conversation(app)
    assert (await conv.connect())["type"] == "websocket.accept"
    closing = await conv.output()
    assert (closing["type"], closing["code"]) == ("websocket.close", 1001)
    await conv.comm.send_input({"type": "websocket.disconnect", "code": 1001})
    await conv.comm.wait(TIMEOUT)
    assert len(app.connections) == 0


async def test_pings_keep_a_connection_alive() -> None:
    """Any frame, a PING included, resets the idle clock."""
    app = echo_router(idle_timeout=100 * MS)
    async with conversation(app) as conv:
        for _ in range(8):  # 8 x 30 ms = 240 ms, well past the timeout
            await asyncio.sleep(30 * MS)
            assert (await conv.ask(JS_PING))["route"] == "PONG"
        closing = await conv.output()
        assert closing["code"] == 1001


# Handler timeout: in-process


async def test_handler_timeout_answers_504_cancels_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler past `handler_timeout` is cancelled, answered 504, logged with route and uuid."""
    cancelled = asyncio.Event()
    app = echo_router(handler_timeout=50 * MS)

    @app.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    with caplog.at_level(logging.WARNING, logger="observable_socket_asgi"):
        async with conversation(app) as conv:
            await conv.send(request("slow", uuid="slow-uuid-1"))
            # the connection keeps serving while the slow handler runs
            assert (await conv.ask(request("echo", 1, uuid=2)))["uuid"] == 2
            reply = await conv.reply()
            assert (reply["status"], reply["uuid"]) == (504, "slow-uuid-1")
            assert cancelled.is_set()
            assert await conv.nothing()
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "'slow'" in record.getMessage() and "slow-uuid-1" in record.getMessage()
    fields = (record.route, record.uuid, record.client)  # type: ignore[attr-defined]
    assert fields == ("slow", "slow-uuid-1", "127.0.0.1:51000")


async def test_route_timeout_overrides_router() -> None:
    """A route's `timeout` option replaces the router's, and `None` lifts it for that route."""
    app = SocketRouter(handler_timeout=30 * MS)

    @app.route("patient", options={"timeout": None})
    async def patient(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(80 * MS)
        return {"payload": "finished"}

    @app.route("strict", options={"timeout": 10 * MS})
    async def strict(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(80 * MS)
        return {"payload": "late"}

    only_route = SocketRouter()
    only_route.add_route("strict", strict, {"timeout": 10 * MS})

    async with conversation(app) as conv:
        assert (await conv.ask(request("patient", uuid=1)))["payload"] == "finished"
        assert (await conv.ask(request("strict", uuid=2)))["status"] == 504
    async with conversation(only_route) as conv:
        assert (await conv.ask(request("strict", uuid=3)))["status"] == 504


# End to end over real uvicorn


async def _close_of(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


@pytest.mark.e2e
def test_e2e_origin_check() -> None:
    """Over uvicorn, a foreign Origin is closed 1008 and a listed one is served."""
    app = echo_router(allowed_origins=["https://app.example.com"])

    async def scenario(url: str) -> None:
        async with connect(url, origin="https://evil.example.net") as ws:  # type: ignore[arg-type]
            assert await _close_of(ws) == (1008, "origin not allowed")
        async with connect(url, origin="https://app.example.com") as ws:  # type: ignore[arg-type]
            await ws.send(request("echo", 1, uuid="e"))
            assert orjson.loads(await ws.recv())["payload"] == 1

    with running(app) as server:
        asyncio.run(scenario(server.url))


@pytest.mark.e2e
def test_e2e_handshake_timeout() -> None:
    """Over uvicorn, an access_logic slower than handshake_timeout is refused with 503."""

    async def access_logic(ws: Any) -> bool:
        await asyncio.sleep(10 * TIMEOUT)
        return True

    app = echo_router(access_logic=access_logic, handshake_timeout=50 * MS)

    async def scenario(url: str) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
        assert info.value.response.status_code == 503

    with running(app) as server:
        asyncio.run(scenario(server.url))


@pytest.mark.e2e
def test_e2e_max_connections() -> None:
    """Over uvicorn, the handshake past the limit gets 503 and the others still work."""
    app = echo_router(max_connections=2)

    async def scenario(url: str) -> None:
        async with connect(url) as a, connect(url) as b:
            await a.send(request("echo", 1))
            await b.send(request("echo", 2))
            assert orjson.loads(await a.recv())["payload"] == 1
            assert orjson.loads(await b.recv())["payload"] == 2
            with pytest.raises(InvalidStatus) as info:
                async with connect(url):
                    pass
            assert info.value.response.status_code == 503
        async with connect(url) as d:
            await d.send(request("echo", 4))
            assert orjson.loads(await d.recv())["payload"] == 4

    with running(app) as server:
        asyncio.run(scenario(server.url))
        eventually_sync(server, lambda: len(app.connections), 0)


@pytest.mark.e2e
def test_e2e_rate_limit_and_ping() -> None:
    """Over uvicorn, the request past the bucket gets 429 with its uuid; PING still gets PONG."""
    app = echo_router(rate_limit=(2, 60.0))

    async def scenario(url: str) -> None:
        async with connect(url) as ws:
            for n in range(3):
                await ws.send(request("echo", n, uuid=f"r{n}"))
            replies = {
                r["uuid"]: r["status"] for r in [orjson.loads(await ws.recv()) for _ in range(3)]
            }
            assert replies == {"r0": 200, "r1": 200, "r2": 429}
            await ws.send(JS_PING)
            assert orjson.loads(await ws.recv())["route"] == "PONG"

    with running(app) as server:
        asyncio.run(scenario(server.url))


@pytest.mark.e2e
def test_e2e_idle_timeout() -> None:
    """Over uvicorn, a silent client is closed with 1001."""
    app = echo_router(idle_timeout=100 * MS)

    async def scenario(url: str) -> None:
        async with connect(url, ping_interval=None) as ws:
            code, _ = await _close_of(ws)
            assert code == 1001

    with running(app) as server:
        asyncio.run(scenario(server.url))


@pytest.mark.e2e
def test_e2e_handler_timeout() -> None:
    """Over uvicorn, a handler past its timeout is answered 504 with the request's uuid."""
    app = echo_router(handler_timeout=50 * MS)

    @app.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    async def scenario(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(request("slow", uuid="t-1"))
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert (reply["status"], reply["uuid"]) == (504, "t-1")

    with running(app) as server:
        asyncio.run(scenario(server.url))


# The connection count under churn, over real uvicorn


@pytest.mark.e2e
def test_e2e_connection_count_exact_under_churn() -> None:
    """1,000 connect/request/close cycles, 20 at a time, against `max_connections=10`.

    A client refused (503) retries (as the JS client does): every cycle is served in the end,
    the server never serves more than the limit at once, and the registry drains to 0. A
    leaked slot would starve the retries; an overshoot would show in the peak.
    """
    concurrency, cycles, limit = 20, 1000, 10
    peak = 0
    refusals = 0
    app = echo_router(max_connections=limit)

    @app.route("count")
    async def count(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        nonlocal peak
        peak = max(peak, len(app.connections))
        return {"payload": payload}

    async def one(url: str, n: int) -> None:
        nonlocal refusals
        deadline = time.monotonic() + 30 * TIMEOUT
        while True:
            assert time.monotonic() < deadline, f"cycle {n} never served"
            try:
                async with connect(url, ping_interval=None) as ws:
                    await ws.send(request("count", n, uuid=n))
                    reply = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    assert (reply["uuid"], reply["status"]) == (n, 200)
                    if n % 3 == 0:
                        await ws.close()  # the others leave by dropping out of `async with`
                    return
            except InvalidStatus as exc:
                assert exc.response.status_code == 503, exc
                refusals += 1
                await asyncio.sleep(MS)

    async def scenario(url: str) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def guarded(n: int) -> None:
            async with gate:
                await one(url, n)

        await asyncio.gather(*(guarded(n) for n in range(cycles)))

    with running(app) as server:
        asyncio.run(scenario(server.url))
        eventually_sync(server, lambda: (len(app.connections), app.registry.slots_taken), (0, 0))
    assert refusals > 0  # the limit was really exercised
    assert 1 <= peak <= limit


# The auth example


def auth_scope(
    query: bytes = b"", cookie: str | None = None, origin: str | None = None
) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return ws_scope(headers=headers, query_string=query)


async def test_auth_example_token_cookie_and_per_route_access() -> None:
    """Query token and session cookie both authenticate; per-route access reads ws.state."""
    from examples.auth import app

    async with conversation(app, auth_scope(query=b"token=bob-token")) as conv:
        me = await conv.ask(request("me", uuid=1))
        assert me["payload"] == {"name": "bob", "roles": ["reader"]}
        assert (await conv.ask(request("admin/stats", uuid=2)))["status"] == 403
    scope = auth_scope(cookie="session=alice-token", origin="https://app.example.com")
    async with conversation(app, scope) as conv:
        assert (await conv.ask(request("me", uuid=1)))["payload"]["name"] == "alice"
        assert (await conv.ask(request("admin/stats", uuid=2)))["status"] == 200
        assert scope["user"].name == "alice"


async def test_auth_example_refuses_missing_token_and_cross_site_cookie() -> None:
    """No token: 1008 access denied. A cookie from a foreign page: 1008 before auth runs."""
    from examples.auth import app

    closing = await refused(app, auth_scope(query=b"token=wrong"))
    assert (closing["code"], closing["reason"]) == (1008, "access denied")
    hijack = auth_scope(cookie="session=alice-token", origin="https://evil.example.net")
    closing = await refused(app, hijack)
    assert (closing["code"], closing["reason"]) == (1008, "origin not allowed")
