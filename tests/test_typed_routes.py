"""Typed routes end to end: validation, serialisation, push topics, the served document, the
command line and the README's example, in-process and on a real server."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from observable_socket_asgi import EncodeError, SocketRouter, Status
from observable_socket_asgi.testing import TestClient
from tests import npm
from tests.helpers import TIMEOUT, Communicator, request, running
from tests.typed_docs import MESSAGE_TS
from tests.typed_types import Item, Move, Order, SumIn, SumOut

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def readme_blocks(language: str) -> list[str]:
    """The code blocks of one language in the typed-routes page (docs/typed.md)."""
    text = (ROOT / "docs" / "typed.md").read_text()
    section = text.split("<!-- BEGIN:typed -->", 1)[1].split("<!-- END:typed -->", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def readme_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The README's typed_app.py, written to a folder of its own and imported from there."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "typed_app.py").write_text(readme_blocks("python")[0])
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("typed_app")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("typed_app", None)


# The README's example


async def test_readme_example_validates_and_answers(readme_app: ModuleType) -> None:
    """The example's routes answer valid payloads and list field errors for bad ones."""
    async with TestClient(readme_app.router) as client:
        ok = await client.request("math/sum", {"numbers": [1, 2, "3"]})
        assert (ok.status, ok.payload) == (200, {"sum": 6})
        bad = await client.request("math/sum", {"numbers": [1, "x"]})
        assert bad.status == Status.BAD_REQUEST
        assert bad.payload == {
            "message": "invalid payload",
            "errors": [
                {
                    "loc": ["numbers", 1],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "type": "int_parsing",
                }
            ],
            "error_count": 1,
        }
        moved = await client.request("game/move", {"x": 0, "y": -5})
        assert (moved.status, moved.payload) == (200, {"ok": True})
        negative = await client.request("game/move", {"x": -1, "y": 0})
        assert negative.status == 400
        assert [(e["loc"], e["type"]) for e in negative.payload["errors"]] == [
            (["x"], "greater_than_equal")
        ]
        missing = await client.request("game/move", None)
        assert missing.status == 400 and missing.payload["errors"][0]["type"] == "dataclass_type"


def test_readme_usage_block_runs(readme_app: ModuleType) -> None:
    """The README's asyncapi()/typescript() block runs as written."""
    for block in readme_blocks("python")[1:]:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_block"})


def test_readme_command_lines_and_typescript(readme_app: ModuleType, tmp_path: Path) -> None:
    """The README's command lines run, and the TypeScript it shows is what they generate."""
    assert readme_app.__file__ is not None
    folder = Path(readme_app.__file__).parent
    (folder / "src").mkdir(exist_ok=True)
    (commands,) = [b for b in readme_blocks("bash") if b.startswith(".venv/bin/observable-socket ")]
    # the README runs the clone's own tools, `.venv/bin/...`: this interpreter's environment
    venv = folder / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.executable).parent.parent)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=folder,
        env=env,
        check=True,
        timeout=npm.TOOL_TIMEOUT,
    )
    document = json.loads((folder / "asyncapi.json").read_text())
    assert document["info"] == {"title": "Game API", "version": "1.0.0"}
    generated = (folder / "src" / "api.ts").read_text()
    (shown,) = readme_blocks("typescript")
    for chunk in re.findall(r"export interface .*?\n}", shown, flags=re.S):
        assert chunk in generated

    result = npm.validate_asyncapi(folder / "asyncapi.json")
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "api.ts").write_text(generated)
    (tmp_path / "usage.ts").write_text(USAGE)
    result = npm.tsc(tmp_path / "api.ts", tmp_path / "usage.ts")
    assert result.returncode == 0, result.stdout + result.stderr


USAGE = (
    'import type { Routes, Topics } from "./api";\n\n'
    + MESSAGE_TS
    + """
export const sum: Message<Routes["math/sum"]["request"]> = {
  uuid: "1", route: "math/sum", headers: {}, payload: { numbers: [1, 2] }, status: 200,
};
export const move: Routes["game/move"]["request"] = { x: 0, y: 1 };
export const answer: number = ({ sum: 3 } as Routes["math/sum"]["response"]).sum;
export const room: Topics["room:{room}"] = { sum: 1 };

export const wrong: Message<Routes["math/sum"]["request"]> = {
  // @ts-expect-error: numbers is a list of numbers
  uuid: "2", route: "math/sum", headers: {}, payload: { numbers: "1, 2" }, status: 200,
};
"""
)


# The pipeline with types


def typed_router(**options: Any) -> SocketRouter:
    return SocketRouter(**options)


async def test_every_hook_sees_the_validated_value() -> None:
    """data_check, access, hydrate and the handler get the model instance, not the dict."""
    router = SocketRouter()
    seen: dict[str, Any] = {}

    def data_check(message: Any, local: dict[str, Any]) -> bool:
        seen["data_check"] = message.payload
        local["count"] = len(message.payload.items)
        return True

    async def access(ws: Any, message: Any) -> bool:
        seen["access"] = message.payload
        return True

    async def hydrate(ws: Any, message: Any) -> Any:
        seen["hydrate"] = message.payload
        return message.payload

    @router.route(
        "shop/order",
        {"payload": Order, "data_check": data_check, "access": access, "hydrate": hydrate},
    )
    async def order(value: Order) -> dict[str, Any]:
        seen["handler"] = value
        return {"payload": {"names": [i.name for i in value.items]}}

    @router.route("shop/count", {"payload": Order, "data_check": data_check})
    async def count(local: dict[str, Any]) -> dict[str, Any]:
        return {"payload": local}

    async with TestClient(router) as client:
        res = await client.request("shop/order", {"items": [{"name": "tea"}]})
        assert (res.status, res.payload) == (200, {"names": ["tea"]})
        counted = await client.request("shop/count", {"items": [{"name": "a"}, {"name": "b"}]})
        assert counted.payload == {"count": 2}
    assert all(isinstance(v, Order) for v in seen.values()), seen
    assert isinstance(seen["handler"].items[0], Item)


async def test_invalid_payload_stops_before_any_hook() -> None:
    """A payload that does not fit is answered 400 before data_check or access run."""
    router = SocketRouter()
    calls: list[str] = []

    def data_check(message: Any) -> bool:
        calls.append("data_check")
        return True

    @router.route("sum", {"payload": SumIn, "data_check": data_check})
    async def handler(ws: Any, headers: Any, payload: SumIn) -> dict[str, Any]:
        calls.append("handler")
        return {}

    async with TestClient(router) as client:
        res = await client.request("sum", {"numbers": "nope"})
    assert res.status == 400 and res.payload["message"] == "invalid payload"
    assert calls == []


async def test_option_wins_over_annotation_and_any_is_untyped() -> None:
    """`payload` in options beats the annotation; `Any` and no annotation stay untyped."""
    router = SocketRouter()

    @router.route("opt", {"payload": list[int]})
    async def opt(ws: Any, headers: Any, payload: SumIn) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("any")
    async def any_(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("bare")
    async def bare(ws, headers, payload):  # type: ignore[no-untyped-def]
        return {"payload": payload}

    assert router.routes["any"].direct and router.routes["any"].payload_schema is None
    assert router.routes["bare"].direct
    assert not router.routes["opt"].direct
    async with TestClient(router) as client:
        assert (await client.request("opt", ["1", 2])).payload == [1, 2]
        assert (await client.request("opt", {"numbers": [1]})).status == 400
        for route in ("any", "bare"):
            payload: Any
            for payload in (0, "", [], {}, None, {"numbers": "x"}):
                assert (await client.request(route, payload)).payload == payload


async def test_response_type_serialises_after_dehydrate() -> None:
    """The 2xx payload is dehydrated, then checked and dumped; extra keys are dropped."""
    router = SocketRouter()

    async def dehydrate(payload: Any) -> Any:
        return {**payload, "secret": "dropped"}

    @router.route("model", {"response": SumIn})
    async def model(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": SumIn(numbers=[1, 2])}

    @router.route("dict", {"response": SumOut, "dehydrate": dehydrate})
    async def as_dict(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"status": 201, "payload": {"sum": "3"}}

    @router.route("dataclass", {"response": Move})
    async def as_dataclass(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": Move(x=1, y=2)}

    @router.route("error", {"response": SumOut})
    async def error(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"status": 404, "payload": {"message": "not found"}}

    async with TestClient(router) as client:
        assert (await client.request("model")).payload == {"numbers": [1, 2]}
        res = await client.request("dict")
        assert (res.status, res.payload) == (201, {"sum": 3})
        assert (await client.request("dataclass")).payload == {"x": 1, "y": 2}
        res = await client.request("error")
        assert (res.status, res.payload) == (404, {"message": "not found"})


async def test_response_that_does_not_fit_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    """A 2xx payload that does not fit its type is a 500; the log names the route and error."""
    router = SocketRouter()

    @router.route("math/sum", {"response": SumOut})
    async def wrong(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": {"total": 3}}

    with caplog.at_level(logging.ERROR, logger="observable_socket_asgi"):
        async with TestClient(router) as client:
            res = await client.request("math/sum", None)
    assert (res.status, res.payload) == (500, {"message": "internal server error"})
    (record,) = [r for r in caplog.records if "declared type" in r.getMessage()]
    assert "math/sum" in record.getMessage() and repr(res.uuid) in record.getMessage()
    assert "sum: Field required" in record.getMessage()


async def test_error_list_is_bounded() -> None:
    """max_validation_errors caps the list; error_count still counts every error."""
    router = SocketRouter(max_validation_errors=2)

    @router.route("numbers", {"payload": list[int]})
    async def numbers(ws: Any, headers: Any, payload: list[int]) -> dict[str, Any]:
        return {}

    async with TestClient(router) as client:
        res = await client.request("numbers", ["x"] * 500)
    assert len(res.payload["errors"]) == 2 and res.payload["error_count"] == 500
    assert len(orjson.dumps(res.payload)) < 1000


def test_registration_errors_name_the_route() -> None:
    """Bad types, bad option values and a bad limit fail at registration."""
    router = SocketRouter()

    class Opaque:
        pass

    with pytest.raises(TypeError, match="'bad'"):
        router.add_route("bad", lambda ws, headers, payload: {}, {"payload": Opaque})
    with pytest.raises(TypeError, match="'bad'"):
        router.add_route("bad", lambda ws, headers, payload: {}, {"response": Opaque})
    assert "bad" not in router.routes
    with pytest.raises(ValueError, match="max_validation_errors"):
        SocketRouter(max_validation_errors=0)
    with pytest.raises(ValueError, match="asyncapi_url"):
        SocketRouter(asyncapi_url="asyncapi.json")


async def test_sync_handlers_and_hooks_work_typed() -> None:
    """Plain-def handlers get validated payloads too."""
    router = SocketRouter()

    @router.route("sum")
    def handler(ws: Any, headers: Any, payload: SumIn) -> dict[str, Any]:
        return {"payload": {"sum": sum(payload.numbers)}}

    async with TestClient(router) as client:
        assert (await client.request("sum", {"numbers": [2, 3]})).payload == {"sum": 5}


# Push topics


async def test_publish_serialises_declared_topics() -> None:
    """publish() to a declared topic dumps models; a payload that does not fit is refused."""
    router = SocketRouter()
    router.push_topic("room:{room}", payload=SumOut, description="room members")
    router.push_topic("news")
    router.push_topic("model", payload=SumIn)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        for topic in payload:
            await ws.subscribe(topic)
        return {}

    async with TestClient(router) as client:
        await client.request("join", ["room:1", "news", "model", "other"])
        await router.publish("room:1", {"sum": "4", "extra": True})
        await router.publish("news", {"anything": [1]})
        await router.publish("model", SumIn(numbers=[7]))
        await router.publish("other", {"untyped": 1})
        with pytest.raises(EncodeError, match=r"room:2.*room:\{room\}"):
            await router.publish("room:2", {"total": 1})
        pushes = [await client.next_push() for _ in range(4)]
    assert [(p.route, p.payload) for p in pushes] == [
        ("room:1", {"sum": 4}),
        ("news", {"anything": [1]}),
        ("model", {"numbers": [7]}),
        ("other", {"untyped": 1}),
    ]


def test_push_topic_registration() -> None:
    """Duplicates and empty names are refused; include_router carries topics over."""
    router = SocketRouter()
    router.push_topic("a", payload=SumOut)
    with pytest.raises(ValueError, match="already declared"):
        router.push_topic("a")
    with pytest.raises(ValueError, match="non-empty"):
        router.push_topic("")
    parent = SocketRouter()
    parent.push_topic("b")
    parent.include_router(router, prefix="x/")
    assert [t.pattern for t in parent.push_topics] == ["b", "a"]


# The document and the declarations of a router


def test_router_document_lists_hooks_and_limits() -> None:
    """Each route's replies list the error answers its hooks and limits can give."""
    router = SocketRouter(rate_limit=(10, 1.0), handler_timeout=2.0)

    async def access(ws: Any, message: Any) -> bool:
        return True

    @router.route("math/sum", {"payload": SumIn, "response": SumOut, "access": access})
    async def handler(ws: Any, headers: Any, payload: SumIn) -> dict[str, Any]:
        """Add numbers.

        Longer words about it.
        """
        return {}

    @router.route("echo", {"timeout": None})
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {}

    document = router.asyncapi(title="T", version="2")
    operations = document["operations"]
    assert operations["math_sum"]["summary"] == "Add numbers."
    assert operations["math_sum"]["description"] == "Longer words about it."

    def statuses(op: str) -> list[int]:
        messages = document["channels"]["socket"]["messages"]
        refs = [r["$ref"].rsplit("/", 1)[1] for r in operations[op]["reply"]["messages"][1:]]
        return [messages[k]["payload"]["properties"]["status"]["const"] for k in refs]

    assert statuses("math_sum") == [400, 403, 413, 429, 500, 504]
    assert statuses("echo") == [413, 429, 500]
    schemas = document["components"]["schemas"]
    assert {"SumIn", "SumOut", "SocketErrorPayload"} <= set(schemas)


def test_document_and_declarations_of_the_typed_app(tmp_path: Path) -> None:
    """The issue's router: its document passes the AsyncAPI parser and its TypeScript tsc."""
    from tests import typed_app

    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(typed_app.router.asyncapi(title="T", version="1", address="/ws")))
    result = npm.validate_asyncapi(path)
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "api.ts").write_text(typed_app.router.typescript())
    (tmp_path / "usage.ts").write_text(USAGE)
    result = npm.tsc(tmp_path / "api.ts", tmp_path / "usage.ts")
    assert result.returncode == 0, result.stdout + result.stderr


# HTTP: the served document


async def http_get(app: Any, path: str, method: str = "GET", root_path: str = "") -> Any:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
    }
    comm = Communicator(app, scope)
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await comm.receive_output(TIMEOUT)
    body = await comm.receive_output(TIMEOUT)
    await comm.wait(TIMEOUT)
    return start["status"], dict(start["headers"]), body["body"]


async def test_asyncapi_url_serves_the_document() -> None:
    """GET at asyncapi_url answers the JSON document; other paths and methods do not."""
    router = SocketRouter(asyncapi_url="/asyncapi.json")

    @router.route("math/sum", {"payload": SumIn})
    async def handler(ws: Any, headers: Any, payload: SumIn) -> dict[str, Any]:
        return {}

    status, headers, body = await http_get(router, "/asyncapi.json")
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert json.loads(body) == router.asyncapi()
    assert int(headers[b"content-length"]) == len(body)
    assert (await http_get(router, "/api/asyncapi.json", root_path="/api"))[0] == 200
    head = await http_get(router, "/asyncapi.json", method="HEAD")
    assert head[0] == 200 and head[2] == b""
    post = await http_get(router, "/asyncapi.json", method="POST")
    assert post[0] == 405 and post[1][b"allow"] == b"GET, HEAD"
    assert (await http_get(router, "/other"))[0] == 426
    assert (await http_get(SocketRouter(), "/asyncapi.json"))[0] == 426


@pytest.mark.e2e
def test_real_server_serves_document_and_typed_routes(tmp_path: Path) -> None:
    """On uvicorn: the document over HTTP (valid for the parser) and a typed route over WS."""
    from tests import typed_app

    async def ws_exchange(url: str) -> list[dict[str, Any]]:
        async with asyncio.timeout(TIMEOUT), connect(url) as ws:
            await ws.send(request("math/sum", {"numbers": [1, 2]}, uuid=1))
            await ws.send(request("math/sum", {"numbers": ["a"]}, uuid=2))
            return [orjson.loads(await ws.recv()) for _ in range(2)]

    with running(typed_app.router) as server:
        http_url = server.url.replace("ws://", "http://")
        response = httpx.get(f"{http_url}/asyncapi.json", timeout=TIMEOUT)
        assert httpx.get(f"{http_url}/", timeout=TIMEOUT).status_code == 426
        answers = asyncio.run(ws_exchange(f"{server.url}/ws"))
    assert response.status_code == 200
    path = tmp_path / "served.json"
    path.write_bytes(response.content)
    by_uuid = {a["uuid"]: a for a in answers}
    assert by_uuid[1]["payload"] == {"sum": 3}
    assert by_uuid[2]["status"] == 400 and by_uuid[2]["payload"]["errors"][0]["loc"] == [
        "numbers",
        0,
    ]
    result = npm.validate_asyncapi(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.e2e
def test_typed_routes_through_fastapi_adapter() -> None:
    """The adapter's router validates and serialises the same way, inside a FastAPI app."""
    from fastapi import FastAPI

    import fastapi_adapter

    router = fastapi_adapter.SocketRouter()

    @router.route("math/sum", {"payload": SumIn, "response": SumOut})
    async def handler(ws: Any, headers: Any, payload: SumIn) -> dict[str, Any]:
        return {"payload": {"sum": sum(payload.numbers), "ws": type(ws).__name__}}

    app = FastAPI()
    app.websocket("/ws")(router)

    async def exchange(url: str) -> list[dict[str, Any]]:
        async with asyncio.timeout(TIMEOUT), connect(url) as ws:
            await ws.send(request("math/sum", {"numbers": [4, 5]}, uuid=1))
            await ws.send(request("math/sum", {"numbers": None}, uuid=2))
            return [orjson.loads(await ws.recv()) for _ in range(2)]

    with running(app) as server:
        answers = {a["uuid"]: a for a in asyncio.run(exchange(f"{server.url}/ws"))}
    assert answers[1]["payload"] == {"sum": 9}  # "ws" dropped by the response type
    assert answers[2]["status"] == 400
    assert answers[2]["payload"]["errors"][0]["loc"] == ["numbers"]
    assert "math/sum" in router.typescript()


# Command line


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observable_socket_asgi", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=npm.TOOL_TIMEOUT,
        check=False,
    )


def test_cli_asyncapi_and_typescript(tmp_path: Path) -> None:
    """`asyncapi` prints the parser-valid document, `typescript` compilable declarations."""
    result = cli("asyncapi", "tests.typed_app:router", "--title", "Game", "--address", "/ws")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["info"]["title"] == "Game"
    assert document["channels"]["socket"]["address"] == "/ws"
    (tmp_path / "doc.json").write_text(result.stdout)
    checked = npm.validate_asyncapi(tmp_path / "doc.json")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    out = tmp_path / "api.ts"
    result = cli("typescript", "tests.typed_app:router", "-o", str(out))
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert '"math/sum": { request: SumIn; response: SumOut };' in out.read_text()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "expected module:attribute"),
        ("no_such_module_here:router", "cannot import"),
        ("tests.typed_app:nothing", "has no attribute"),
        ("tests.typed_app:SumIn", "not a SocketRouter"),
    ],
)
def test_cli_usage_errors(spec: str, message: str) -> None:
    """A bad module:attribute exits 2 with a message, not a traceback."""
    for command in ("asyncapi", "typescript"):
        result = cli(command, spec)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr


# pydantic stays out of untyped routers


UNTYPED = """
import asyncio, json, sys
{imports}
router = SocketRouter(asyncapi_url="/asyncapi.json")

@router.route("echo")
async def echo(ws, headers, payload):
    return {{"payload": payload}}

@router.route("any")
async def any_(ws, headers, payload: "Any") -> dict:
    return {{"payload": payload}}

router.push_topic("news", description="untyped")
{declare}

async def main():
    async with TestClient(router) as client:
        assert (await client.request("echo", [1])).payload == [1]
        await router.publish("news", 1)
    router.asyncapi()
    router.typescript()

asyncio.run(main())
print(json.dumps("pydantic" in sys.modules))
"""


@pytest.mark.parametrize("flavour", ["core", "fastapi_adapter"])
@pytest.mark.parametrize("typed", [False, True])
def test_pydantic_is_imported_only_for_declared_types(flavour: str, typed: bool) -> None:
    """A fresh interpreter serving untyped routes never imports pydantic; one typed route does."""
    imports = {
        "core": "from observable_socket_asgi import SocketRouter",
        "fastapi_adapter": "from fastapi_adapter import SocketRouter",
    }[flavour]
    imports += "\nfrom typing import Any\nfrom observable_socket_asgi.testing import TestClient"
    declare = (
        '@router.route("sum", {"payload": list[int]})\n'
        "async def typed(ws, headers, payload):\n"
        "    return {}\n"
        if typed
        else ""
    )
    code = UNTYPED.format(imports=imports, declare=declare)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=npm.TOOL_TIMEOUT,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) is typed
