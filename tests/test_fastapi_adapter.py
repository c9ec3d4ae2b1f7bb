"""The FastAPI/Starlette adapter: every way of plugging the router in, on real uvicorn."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
import pytest
from fastapi import Depends, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import fastapi_adapter
import observable_socket_asgi
from fastapi_adapter import SocketRouter, Status, observable
from tests.helpers import (
    JS_FRAME,
    JS_PING,
    MS,
    TIMEOUT,
    Server,
    pause,
    plain_asgi,
    request,
    running,
    wait_until_sync,
    ws_scope,
)
from tests.protocol_cases import CASES, Connect, connector, install_routes

pytestmark = pytest.mark.e2e

TOKENS = {"t-alice": "alice"}


def inspecting_router(**options: Any) -> SocketRouter:
    """A router whose routes report what they were given as `ws`."""
    router = SocketRouter(**options)

    @router.route("math/sum")
    async def sum_handler(ws: Any, headers: Any, payload: Any) -> Any:
        return {"status": Status.OK, "payload": {"sum": sum(payload or [])}}

    @router.route("inspect")
    async def inspect_ws(ws: Any, headers: Any, payload: Any) -> Any:
        return {
            "payload": {
                "starlette": isinstance(ws, WebSocket),
                "same_scope": observable(ws).scope is ws.scope,
                "user": ws.scope.get("user"),
                "header": ws.headers.get("x-test"),
                "cookie": ws.cookies.get("theme"),
                "query": ws.query_params.get("q"),
                "path": ws.url.path,
            }
        }

    @router.route("push-me")
    async def push_me(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.state.observable.push("news", payload)
        return {"status": Status.ACCEPTED}

    @router.route("close-me")
    async def close_me(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.state.observable.close(4000, "bye")
        return {}

    return router


def current_user(token: str | None = None) -> str | None:
    return TOKENS.get(token or "")


def fastapi_app(router: SocketRouter) -> FastAPI:
    """The issue's four ways, on one app."""
    app = FastAPI()

    @app.websocket("/ws")
    async def websocket_router(
        ws: WebSocket, user: Annotated[str | None, Depends(current_user)]
    ) -> None:
        ws.scope["user"] = user
        await router(ws)

    @app.websocket("/accepted")
    async def accepted_first(ws: WebSocket) -> None:
        await ws.accept()
        await router(ws)

    app.add_api_websocket_route("/ws2", router)
    app.router.add_websocket_route("/ws3", router)
    app.mount("/ws4", plain_asgi(router))
    return app


def ask(url: str, *frames: str, **options: Any) -> list[dict[str, Any]]:
    """Connect, send each frame and read one answer per frame."""

    async def run() -> list[dict[str, Any]]:
        async with asyncio.timeout(TIMEOUT), connect(url, **options) as ws:
            answers = []
            for frame in frames:
                await ws.send(frame)
                answers.append(orjson.loads(await ws.recv()))
            return answers

    return asyncio.run(run())


def wait_for_no_connections(server: Server, router: SocketRouter) -> None:
    """Poll, bounded, until the router holds no connection."""
    wait_until_sync(
        lambda: server.call(lambda: len(router.connections)) == 0,
        within=TIMEOUT,
        what="no connection left on the router",
    )


# Imports and exports


def test_exports_resolve() -> None:
    """Every name in `__all__` exists, and the shared ones are the core's own objects."""
    for name in fastapi_adapter.__all__:
        assert getattr(fastapi_adapter, name) is not None, name
    for name in ("Status", "MessageData", "HandlerResult", "RouteOptions", "CloseCode"):
        assert getattr(fastapi_adapter, name) is getattr(observable_socket_asgi, name)
    assert issubclass(SocketRouter, observable_socket_asgi.SocketRouter)


def test_import_without_starlette_names_the_extra() -> None:
    """Without FastAPI/Starlette, importing the adapter fails with the extra's name."""
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = sys.modules['starlette'] = None\n"
        "try:\n"
        "    import fastapi_adapter\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    from observable_socket_asgi._extras import install_command

    assert install_command("fastapi") in out.stdout


def test_core_never_imports_fastapi_or_starlette() -> None:
    """Importing every module of the core (that can be) leaves FastAPI and Starlette out."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import observable_socket_asgi as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'observable_socket_asgi.'):\n"
        "    if m.name.endswith('__main__'):\n"
        "        continue\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except ImportError:\n"
        "        pass  # a module of another optional extra (redis) that is not installed\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('fastapi', 'starlette'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Calling conventions


def test_unawaited_call_fails_loudly(caplog: pytest.LogCaptureFixture) -> None:
    """`router(ws)` without await logs an error and warns, naming `await router(ws)`."""
    router = SocketRouter()

    async def never(*_: Any) -> Any:
        raise AssertionError("nothing may be received or sent")

    ws = WebSocket(ws_scope(), never, never)
    with pytest.warns(RuntimeWarning, match=r"await router\(ws\)"):
        router(ws)
        gc.collect()
    assert any(
        r.levelno == logging.ERROR and "await router(ws)" in r.getMessage() for r in caplog.records
    )


def test_awaited_call_does_not_warn() -> None:
    """An awaited (or task-driven) call is silent, even when it fails."""
    router = SocketRouter()

    async def main() -> None:
        with pytest.raises(TypeError):
            router(ws_scope())  # type: ignore[arg-type]  # deliberately without receive/send
        unknown: Any = {"type": "unknown"}  # deliberately not a scope the router knows
        task = asyncio.ensure_future(router(unknown, _no_receive, _no_send))
        with pytest.raises(ValueError, match="unsupported ASGI scope"):
            await task

    asyncio.run(main())


async def _no_receive() -> Any:
    raise AssertionError


async def _no_send(message: Any) -> None:
    raise AssertionError


def test_fastapi_sees_a_websocket_endpoint() -> None:
    """FastAPI reads one WebSocket parameter from the router, and uvicorn sees ASGI 3."""
    import inspect

    from uvicorn._compat import iscoroutinefunction

    router = SocketRouter()
    (param,) = inspect.signature(router).parameters.values()
    assert param.annotation is WebSocket
    assert "access_logic" in inspect.signature(SocketRouter).parameters
    assert iscoroutinefunction(router.__call__)


def test_observable_outside_a_router_is_a_lookup_error() -> None:
    """`observable(ws)` on a WebSocket no router serves says so."""
    ws = WebSocket(ws_scope(), _no_receive, _no_send)
    with pytest.raises(LookupError):
        observable(ws)


# Every way to plug it in, on real uvicorn


@pytest.mark.parametrize("path", ["/ws", "/ws2", "/ws3", "/ws4/", "/ws4/deeper", "/accepted"])
def test_fastapi_ways(serve: Any, path: str) -> None:
    """Each registration serves the protocol, with Starlette's WebSocket as `ws`."""
    router = inspecting_router()
    server = serve(fastapi_app(router))
    url = f"{server.url}{path}?q=1&token=t-alice"
    reply, pong, inspected, pushed, answer = ask(
        url,
        JS_FRAME,
        JS_PING,
        request("inspect", uuid=2),
        request("push-me", [1], uuid=3),  # read back: the push
        request("math/sum", [], uuid=4),  # read back: push-me's answer, which follows it
        additional_headers={"X-Test": "yes", "Cookie": "theme=dark"},
    )
    assert reply["uuid"] == "a5e4e2e8-35c2-4b34-b40b-71faaf341206"
    assert reply["payload"] == {"sum": 10}
    assert pong["route"] == "PONG"
    assert inspected["payload"] == {
        "starlette": True,
        "same_scope": True,
        "user": "alice" if path == "/ws" else None,
        "header": "yes",
        "cookie": "dark",
        "query": "1",
        "path": path,
    }
    assert pushed["route"] == "news" and pushed["payload"] == [1]
    assert (answer["uuid"], answer["status"]) == (3, 202)
    wait_for_no_connections(server, router)


def test_starlette_websocket_route(serve: Any) -> None:
    """A plain Starlette app with `WebSocketRoute("/ws", router)`."""
    router = inspecting_router()
    server = serve(Starlette(routes=[WebSocketRoute("/ws", router)]))
    reply, inspected = ask(f"{server.url}/ws", JS_FRAME, request("inspect"))
    assert reply["payload"] == {"sum": 10}
    assert inspected["payload"]["starlette"] is True
    wait_for_no_connections(server, router)


def test_served_directly_by_uvicorn() -> None:
    """The adapter router is still a complete ASGI 3 app (`uvicorn module:router`)."""
    router = inspecting_router()
    with running(router) as server:
        (inspected,) = ask(f"{server.url}/anywhere", request("inspect"))
    assert inspected["payload"]["starlette"] is True


def test_access_logic_gets_the_websocket() -> None:
    """`access_logic(ws)` reads the Starlette WebSocket; a refusal closes with 1008."""
    seen: list[bool] = []

    def access(ws: Any) -> bool:
        seen.append(isinstance(ws, WebSocket) and ws.state.observable is not None)
        return ws.query_params.get("token") in TOKENS and ws.scope.get("user") == "alice"

    router = inspecting_router(access_logic=access)

    async def refused(url: str) -> Any:
        async with asyncio.timeout(TIMEOUT), connect(url) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    with running(fastapi_app(router)) as server:
        (reply,) = ask(f"{server.url}/ws?token=t-alice", JS_FRAME)
        assert reply["payload"] == {"sum": 10}
        assert asyncio.run(refused(f"{server.url}/ws?token=nope")) == 1008
        assert asyncio.run(refused(f"{server.url}/ws2?token=t-alice")) == 1008
    assert seen == [True, True, True]


def test_close_through_observable() -> None:
    """`ws.state.observable.close()` closes with the given code and frees the connection."""
    router = inspecting_router()

    async def run(url: str) -> Any:
        async with asyncio.timeout(TIMEOUT), connect(url) as ws:
            await ws.send(request("close-me"))
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            return ws.close_code, ws.close_reason

    with running(fastapi_app(router)) as server:
        assert asyncio.run(run(f"{server.url}/ws")) == (4000, "bye")
        wait_for_no_connections(server, router)


def test_starlette_state_and_send_json_while_served() -> None:
    """A handler may write through Starlette's own ws.send_json; after the router returns,
    the endpoint sees the WebSocket as disconnected."""
    router = SocketRouter()
    states: list[Any] = []

    @router.route("note")
    async def note(ws: WebSocket, headers: Any, payload: Any) -> dict[str, Any]:
        states.append(ws.application_state)
        await ws.send_json({"route": "aside", "payload": payload})
        return {"payload": "noted"}

    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(ws: WebSocket) -> None:
        await router(ws)
        states.append((ws.client_state, ws.application_state))

    with running(app) as server:
        answers = ask(f"{server.url}/ws", request("note", 7), request("note", 8))
        assert answers[0] == {"route": "aside", "payload": 7}
        wait_for_no_connections(server, router)
        for _ in range(500):
            if len(states) == 3:
                break
            pause(10 * MS)
    from starlette.websockets import WebSocketState

    assert states[0] == WebSocketState.CONNECTED
    assert states[-1] == (WebSocketState.DISCONNECTED, WebSocketState.DISCONNECTED)


def test_bare_mount_path_is_not_the_router() -> None:
    """`app.mount("/ws4", router)` serves below `/ws4/`; `/ws4` itself is not routed there."""
    router = inspecting_router()

    async def run(url: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises((InvalidStatus, ConnectionClosed)):
                async with connect(url) as ws:
                    await ws.send(JS_FRAME)
                    await ws.recv()

    with running(fastapi_app(router)) as server:
        asyncio.run(run(f"{server.url}/ws4"))


# The shared protocol cases, through the FastAPI mount


@pytest.fixture(scope="module")
def fastapi_mount() -> Iterator[Connect]:
    router = SocketRouter()
    install_routes(router, lambda ws: ws.state.observable)
    app = FastAPI()
    app.mount("/socket", plain_asgi(router))
    with running(app) as server:
        yield connector(f"{server.url}/socket/")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__.removeprefix("case_"))
def test_protocol_through_fastapi_mount(fastapi_mount: Connect, case: Any) -> None:
    """PROTOCOL.md, as the shared cases check it, holds through a FastAPI mount."""
    asyncio.run(case(fastapi_mount), debug=True)


# The README's "fetch once, use twice" example on FastAPI


def test_fetch_once_use_twice(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/fastapi_app.py serves the article example on SQLite, with its Depends."""
    monkeypatch.setenv("EXAMPLES_DB_URL", f"sqlite+aiosqlite:///{tmp_path / 'articles.db'}")
    from examples import fastapi_app

    def get(url: str, *ids: str | None) -> list[dict[str, Any]]:
        frames = [
            request("get-article", uuid=n, headers={} if i is None else {"article": i})
            for n, i in enumerate(ids)
        ]
        return ask(url, *frames)

    with running(fastapi_app.app) as server:
        as_alice = get(f"{server.url}/ws?user=alice", "1", "2", "3", "4", "99", None, "x")
        anonymous = get(f"{server.url}/ws", "1", "2")
        for path in ("/ws", "/ws2", "/ws3", "/ws4/"):
            (reply,) = ask(f"{server.url}{path}", request("math/sum", [1, 2, 3, 4]))
            assert reply["payload"] == {"sum": 10}, path
    assert as_alice[0]["payload"] == {
        "title": "Hello, sockets",
        "author": "alice",
        "body": "A public article anyone may read.",
    }
    assert [a["status"] for a in as_alice] == [200, 200, 200, 403, 404, 400, 400]
    assert as_alice[2]["payload"]["title"] == "Alice's drafts"
    assert as_alice[4]["payload"] == {"message": "not found"}
    assert [a["status"] for a in anonymous] == [200, 403]


def test_exports_follow_the_core() -> None:
    """The adapter's names are the core's `__all__` (read, not copied) plus its own."""
    core = set(observable_socket_asgi.__all__) - {"__version__"}
    assert core | {"observable"} == set(fastapi_adapter.__all__)
    assert fastapi_adapter.SocketRouter is SocketRouter
    with pytest.raises(AttributeError):
        fastapi_adapter.not_a_name  # noqa: B018
