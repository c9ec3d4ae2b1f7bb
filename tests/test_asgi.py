"""The ASGI surface: handshake and connection-level access, http refusal, lifespan, `ws` views."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from observable_socket_asgi import Connection, InMemoryBackplane, SocketRouter
from observable_socket_asgi.logs import JsonFormatter
from tests.helpers import (
    MS,
    TIMEOUT,
    Communicator,
    Conversation,
    conversation,
    echo_router,
    request,
    ws_scope,
)


@pytest.mark.parametrize("sync", [False, True])
async def test_access_logic_false_accepts_then_closes_1008(sync: bool) -> None:
    """A connection refused by access_logic is accepted, then closed with 1008 and a reason."""
    if sync:

        def deny(ws: Any) -> bool:
            return False
    else:

        async def deny(ws: Any) -> bool:  # type: ignore[misc]
            return False

    conv = Conversation(echo_router(access_logic=deny))
    assert (await conv.connect())["type"] == "websocket.accept"
    closed = await conv.output()
    assert closed["type"] == "websocket.close" and closed["code"] == 1008
    assert closed["reason"]
    await conv.comm.wait(TIMEOUT)


async def test_access_logic_reads_handshake() -> None:
    """access_logic sees the handshake's headers, cookies and query string."""
    seen: dict[str, Any] = {}

    async def allow(ws: Any) -> bool:
        seen["token"] = ws.query_params.get("token")
        seen["cookie"] = ws.cookies.get("sid")
        seen["header"] = ws.headers.get("X-Auth")
        return bool(seen["token"] == "t")

    scope = ws_scope(
        headers=[(b"host", b"h"), (b"cookie", b"sid=42; other=1"), (b"x-auth", b"yes")],
        query_string=b"token=t",
    )
    async with conversation(echo_router(access_logic=allow), scope) as conv:
        assert (await conv.ask(request("echo", 1)))["payload"] == 1
    assert seen == {"token": "t", "cookie": "42", "header": "yes"}


async def test_access_logic_raising_is_refused_before_accept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception inside access_logic is transient until shown otherwise: the handshake is
    refused before accept (503 with Retry-After where the server offers it, else a close
    before accept), never a 1011 after it; logged once with the traceback."""

    def broken(ws: Any) -> bool:
        raise RuntimeError("db down")

    caplog.set_level(logging.WARNING, logger="observable_socket_asgi")
    conv = Conversation(echo_router(access_logic=broken))
    closed = await conv.connect()
    assert (closed["type"], closed["code"]) == ("websocket.close", 1013)
    await conv.comm.wait(TIMEOUT)
    offered = Conversation(
        echo_router(access_logic=broken),
        ws_scope(extensions={"websocket.http.response": {}}),
    )
    start = await offered.connect()
    assert (start["type"], start["status"]) == ("websocket.http.response.start", 503)
    assert int(dict(start["headers"])[b"retry-after"]) >= 5
    body = await offered.output()
    assert body["type"] == "websocket.http.response.body" and b"db down" not in body["body"]
    await offered.comm.wait(TIMEOUT)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 2 and all(r.exc_info for r in records)


async def test_http_scope_gets_426() -> None:
    """A plain HTTP request to the router is answered 426 Upgrade Required, not a crash."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"h")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    comm = Communicator(echo_router(), scope)
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await comm.receive_output(TIMEOUT)
    assert (start["type"], start["status"]) == ("http.response.start", 426)
    body = await comm.receive_output(TIMEOUT)
    assert b"Upgrade Required" in body["body"]
    await comm.wait(TIMEOUT)


async def test_lifespan_runs_startup_and_shutdown_hooks() -> None:
    """Lifespan startup and shutdown run the router's hooks, sync and async."""
    calls: list[str] = []
    router = SocketRouter(on_startup=[lambda: calls.append("init-sync")])

    @router.on_startup
    async def start() -> None:
        calls.append("start")

    @router.on_shutdown
    def stop() -> None:
        calls.append("stop")

    comm = Communicator(router, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await comm.send_input({"type": "lifespan.startup"})
    assert await comm.receive_output(TIMEOUT) == {"type": "lifespan.startup.complete"}
    assert calls == ["init-sync", "start"]
    await comm.send_input({"type": "lifespan.shutdown"})
    assert await comm.receive_output(TIMEOUT) == {"type": "lifespan.shutdown.complete"}
    assert calls == ["init-sync", "start", "stop"]
    await comm.wait(TIMEOUT)


async def test_lifespan_awaits_a_coroutine_returned_by_a_plain_hook() -> None:
    """A plain hook that returns a coroutine (`lambda: engine.connect()`) has it awaited."""
    calls: list[str] = []

    async def connect() -> None:
        calls.append("connected")

    router = SocketRouter(on_startup=[lambda: connect()], on_shutdown=[lambda: connect()])
    comm = Communicator(router, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await comm.send_input({"type": "lifespan.startup"})
    assert await comm.receive_output(TIMEOUT) == {"type": "lifespan.startup.complete"}
    await comm.send_input({"type": "lifespan.shutdown"})
    assert await comm.receive_output(TIMEOUT) == {"type": "lifespan.shutdown.complete"}
    await comm.wait(TIMEOUT)
    assert calls == ["connected", "connected"]


async def test_lifespan_startup_failure_reported(caplog: pytest.LogCaptureFixture) -> None:
    """A failing startup hook is reported as lifespan.startup.failed."""

    def fail() -> None:
        raise RuntimeError("no db")

    caplog.set_level(logging.CRITICAL, logger="observable_socket_asgi")
    comm = Communicator(
        SocketRouter(on_startup=[fail]), {"type": "lifespan", "asgi": {"version": "3.0"}}
    )
    await comm.send_input({"type": "lifespan.startup"})
    assert (await comm.receive_output(TIMEOUT))["type"] == "lifespan.startup.failed"
    await comm.wait(TIMEOUT)


class _RecordingBackplane(InMemoryBackplane):
    """The in-memory transport, noting when it starts and stops."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    async def start(self, receiver: Any) -> None:
        self.calls.append("backplane start")
        await super().start(receiver)

    async def stop(self) -> None:
        self.calls.append("backplane stop")
        await super().stop()


async def test_router_lifespan_does_what_the_asgi_lifespan_does() -> None:
    """`async with router.lifespan()` starts the backplane, then runs the startup hooks, and
    on the way out runs the shutdown hooks, then stops the backplane: as the ASGI lifespan."""
    calls: list[str] = []
    router = SocketRouter(
        backplane=_RecordingBackplane(calls),
        on_startup=[lambda: calls.append("startup hook")],
        on_shutdown=[lambda: calls.append("shutdown hook")],
    )
    async with router.lifespan():
        assert calls == ["backplane start", "startup hook"]
        assert router.backplane.connected
    assert calls == ["backplane start", "startup hook", "shutdown hook", "backplane stop"]

    asgi_calls: list[str] = []
    asgi_router = SocketRouter(
        backplane=_RecordingBackplane(asgi_calls),
        on_startup=[lambda: asgi_calls.append("startup hook")],
        on_shutdown=[lambda: asgi_calls.append("shutdown hook")],
    )
    comm = Communicator(asgi_router, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await comm.send_input({"type": "lifespan.startup"})
    assert await comm.receive_output(TIMEOUT) == {"type": "lifespan.startup.complete"}
    await comm.send_input({"type": "lifespan.shutdown"})
    assert await comm.receive_output(TIMEOUT) == {"type": "lifespan.shutdown.complete"}
    await comm.wait(TIMEOUT)
    assert asgi_calls == calls


async def test_router_lifespan_shuts_down_when_the_body_raises() -> None:
    """A body that raises still gets the shutdown hooks and the backplane stopped; the
    explicit `startup()`/`shutdown()` pair does the same two halves."""
    calls: list[str] = []
    router = SocketRouter(
        backplane=_RecordingBackplane(calls), on_shutdown=[lambda: calls.append("shutdown hook")]
    )
    with pytest.raises(RuntimeError, match="serving failed"):
        async with router.lifespan():
            raise RuntimeError("serving failed")
    assert calls == ["backplane start", "shutdown hook", "backplane stop"]
    calls.clear()
    await router.startup()
    assert calls == ["backplane start"]
    await router.shutdown()
    assert calls == ["backplane start", "shutdown hook", "backplane stop"]


async def test_router_startup_failure_propagates() -> None:
    """A failing startup hook raises out of `router.lifespan()`, and the body never runs."""

    def fail() -> None:
        raise RuntimeError("no db")

    router = SocketRouter(on_startup=[fail])
    entered = False
    with pytest.raises(RuntimeError, match="no db"):
        async with router.lifespan():
            entered = True
    assert not entered


async def test_disconnect_before_accept() -> None:
    """A client that leaves before the handshake completes ends the app quietly."""
    comm = Communicator(echo_router(), ws_scope())
    await comm.send_input({"type": "websocket.disconnect", "code": 1006})
    await comm.wait(TIMEOUT)
    assert await comm.receive_nothing()


async def test_connection_attributes() -> None:
    """`ws` has Starlette's names: scope, headers, query_params, cookies, client, state, path."""
    router = SocketRouter()
    seen: dict[str, Any] = {}

    @router.route("inspect")
    async def inspect_ws(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        seen["is_connection"] = isinstance(ws, Connection)
        seen["user"] = ws.scope["user"]
        seen["ua"] = ws.headers["user-agent"]
        seen["ua_upper"] = ws.headers.get("User-Agent")
        seen["q"] = ws.query_params["q"]
        seen["q_all"] = ws.query_params.getlist("q")
        seen["cookies"] = ws.cookies
        seen["client"] = (ws.client.host, ws.client.port)
        seen["path"] = ws.path
        ws.state.counter = getattr(ws.state, "counter", 0) + 1
        seen["counter"] = ws.state.counter
        seen["db"] = ws.state.db
        return {}

    scope = ws_scope(
        path="/socket",
        headers=[(b"host", b"h"), (b"user-agent", b"test/1"), (b"cookie", b'a=1; b="x y"')],
        query_string=b"q=1&q=2",
        user="ann",
        state={"db": "conn"},
    )
    async with conversation(router, scope) as conv:
        await conv.ask(request("inspect"))
        await conv.ask(request("inspect"))
    assert seen == {
        "is_connection": True,
        "user": "ann",
        "ua": "test/1",
        "ua_upper": "test/1",
        "q": "2",
        "q_all": ["1", "2"],
        "cookies": {"a": "1", "b": "x y"},
        "client": ("127.0.0.1", 51000),
        "path": "/socket",
        "counter": 2,
        "db": "conn",
    }


async def test_unknown_scope_type_raises() -> None:
    """A scope type the router does not serve is an error for the server, not a hang."""
    comm = Communicator(echo_router(), {"type": "custom"})
    with pytest.raises(ValueError, match="custom"):
        await comm.wait(TIMEOUT)


async def test_max_connections_is_refused_before_accept() -> None:
    """Past max_connections a new handshake is refused before accept (no open, so the JS
    client backs off), with a close where the server offers no denial extension."""
    router = echo_router(max_connections=1)
    async with conversation(router) as conv:
        assert (await conv.ask(request("echo", 1)))["payload"] == 1
        second = Conversation(router)
        refused = await second.connect()
        assert (refused["type"], refused["code"]) == ("websocket.close", 1013)
        await second.comm.wait(TIMEOUT)
    assert router.connections == set()


async def test_origin_not_allowed_closes_1008() -> None:
    """A browser origin outside allowed_origins is closed with 1008; an allowed one is served."""
    router = echo_router(allowed_origins=["https://*.example.com"])
    bad = Conversation(router, ws_scope(headers=[(b"origin", b"https://evil.test")]))
    await bad.connect()
    assert (await bad.output())["code"] == 1008
    await bad.comm.wait(TIMEOUT)
    good_scope = ws_scope(headers=[(b"origin", b"https://app.example.com")])
    async with conversation(router, good_scope) as conv:
        assert (await conv.ask(request("echo", 2)))["payload"] == 2


def refusing_router(case: str) -> SocketRouter:
    async def slow(ws: Any) -> bool:
        await asyncio.sleep(10 * TIMEOUT)
        return True

    def boom(ws: Any) -> bool:
        raise RuntimeError("database down")

    cases: dict[str, dict[str, Any]] = {
        "origin": {"allowed_origins": ["https://app.example.com"]},
        "no origin": {"require_origin": True},
        "access": {"access_logic": lambda ws: False},
        "raised": {"access_logic": boom},
        "slow": {"access_logic": slow, "handshake_timeout": 50 * MS},
    }
    return echo_router(**cases[case])


@pytest.mark.parametrize(
    ("case", "why", "level"),
    [
        ("origin", "origin 'https://evil.example' not allowed", logging.WARNING),
        ("no origin", "no Origin header", logging.WARNING),
        ("access", "access_logic said no", logging.WARNING),
        ("raised", "access_logic raised, try again later", logging.WARNING),
        ("slow", f"access_logic took over {50 * MS} s, try again later", logging.WARNING),
    ],
)
async def test_every_refusal_is_logged_once_with_the_client_address(
    case: str, why: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Each refused handshake gives one record: the client address in the text and as the
    `client` field a JSON formatter writes out."""
    caplog.set_level(logging.DEBUG, logger="observable_socket_asgi")
    headers = [(b"host", b"h")]
    if case == "origin":
        headers.append((b"origin", b"https://evil.example"))
    conv = Conversation(refusing_router(case), ws_scope(headers=headers, client=("10.0.0.7", 5123)))
    first = await conv.connect()
    if case in ("raised", "slow"):  # to retry: refused before accept
        assert first["type"] == "websocket.close"
    else:  # for good: accepted, then closed 1008
        assert first["type"] == "websocket.accept"
        assert (await conv.output())["type"] == "websocket.close"
    await conv.comm.wait(TIMEOUT)
    # the router's records only: asyncio's debug mode warns of slow steps on a loaded machine
    [record] = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("observable_socket_asgi")
    ]
    assert record.levelno == level
    assert record.getMessage() == f"refused 10.0.0.7:5123: {why}"
    assert record.client == "10.0.0.7:5123"  # type: ignore[attr-defined]
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["client"], entry["path"], entry["level"]) == (
        "10.0.0.7:5123",
        "/ws",
        logging.getLevelName(level),
    )
    assert ("exc_info" in entry) is (case == "raised")


async def test_refusal_over_max_connections_is_logged_with_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past max_connections the refusal names the client and how many connections are open."""
    router = echo_router(max_connections=1)
    caplog.set_level(logging.WARNING, logger="observable_socket_asgi")
    async with conversation(router):
        conv = Conversation(router, ws_scope(client=("10.0.0.8", 6000)))
        assert (await conv.connect())["code"] == 1013
        await conv.comm.wait(TIMEOUT)
    [record] = caplog.records
    assert record.getMessage() == "refused 10.0.0.8:6000: max_connections (1) reached"
    assert record.client == "10.0.0.8:6000"  # type: ignore[attr-defined]
