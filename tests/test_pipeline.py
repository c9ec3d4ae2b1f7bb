"""The route pipeline on an event loop, without ASGI: hooks, arities, results and failures."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Any

import orjson
import pytest

from observable_socket_asgi import Request, SocketRouter
from observable_socket_asgi.server.pipeline import run

WS = object()


async def serve(
    handler: Any,
    options: dict[str, Any] | None = None,
    payload: Any = None,
    uuid: Any = 1,
    headers: Any = None,
) -> dict[str, Any]:
    router = SocketRouter()
    route = router.add_route("r", handler, options)  # type: ignore[arg-type]
    try:
        frame = await run(route, WS, Request(uuid, "r", headers, payload))
    finally:
        router._executor.shutdown(wait=True)
    result: dict[str, Any] = orjson.loads(frame)
    return result


def maybe_sync(fn: Any, sync: bool) -> Any:
    """Return `fn` as a plain function or as an `async def` doing the same."""
    if sync:
        return fn

    @functools.wraps(fn)  # keeps fn's signature, so the router reads the same arity
    async def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


async def test_triple_handler_gets_ws_headers_payload() -> None:
    """Without hooks the handler gets (ws, headers, payload), payload exactly as sent."""
    seen: list[Any] = []

    async def handler(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        seen.extend([ws, headers, payload])
        return {"payload": payload}

    reply = await serve(handler, payload=0, headers={"h": 1}, uuid="u")
    assert seen == [WS, {"h": 1}, 0]
    assert reply == {"uuid": "u", "status": 200, "headers": {}, "payload": 0}


@pytest.mark.parametrize("sync", [False, True])
@pytest.mark.parametrize("with_local", [False, True])
async def test_data_check(sync: bool, with_local: bool) -> None:
    """data_check with or without `local`, sync or async: False answers 400, True goes on."""
    if with_local:

        def check(message: Any, local: dict[str, Any]) -> bool:
            local["n"] = message.payload
            return bool(message.payload)
    else:

        def check(message: Any) -> bool:  # type: ignore[misc]
            return bool(message.payload)

    def handler(value: Any) -> dict[str, Any]:
        return {"payload": value}

    options = {"data_check": maybe_sync(check, sync)}
    ok = await serve(handler, options, payload=5)
    assert ok["status"] == 200
    assert ok["payload"] == ({"n": 5} if with_local else {})
    bad = await serve(handler, options, payload=0, uuid=9)
    assert bad["status"] == 400 and bad["uuid"] == 9
    assert "message" in bad["payload"]


@pytest.mark.parametrize("sync", [False, True])
@pytest.mark.parametrize("with_local", [False, True])
async def test_access(sync: bool, with_local: bool) -> None:
    """access with or without `local`, sync or async: False is 403, the handler never runs."""
    calls: list[Any] = []
    if with_local:

        def access(ws: Any, message: Any, local: dict[str, Any]) -> bool:
            assert ws is WS
            local["user"] = "ann"
            return bool(message.headers.get("token") == "ok")
    else:

        def access(ws: Any, message: Any) -> bool:  # type: ignore[misc]
            assert ws is WS
            return bool(message.headers.get("token") == "ok")

    def handler(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        calls.append(payload)
        return {"status": 201}

    options = {"access": maybe_sync(access, sync)}
    if with_local:
        # a non-empty local makes a three-argument handler invalid only with hydrate; use *args
        def either(*args: Any) -> dict[str, Any]:
            calls.append(args)
            return {"status": 201, "payload": args[0] if len(args) == 1 else None}

        ok = await serve(either, options, headers={"token": "ok"})
        assert ok["payload"] == {"user": "ann"}
    else:
        ok = await serve(handler, options, headers={"token": "ok"})
    assert ok["status"] == 201
    calls.clear()
    denied = await serve(handler, options, headers={"token": "no"}, uuid="d")
    assert (denied["status"], denied["uuid"]) == (403, "d")
    assert calls == []


async def test_local_shared_by_data_check_access_and_handler() -> None:
    """`local` is one dict per request: data_check and access fill it, the handler reads it."""

    def check(message: Any, local: dict[str, Any]) -> bool:
        local["a"] = 1
        return True

    async def access(ws: Any, message: Any, local: dict[str, Any]) -> bool:
        local["value"] = local["a"] + 1
        return True

    async def handler(local: dict[str, Any]) -> dict[str, Any]:
        return {"payload": local["value"]}

    reply = await serve(handler, {"data_check": check, "access": access})
    assert reply["payload"] == 2


async def test_either_handler_gets_triple_when_local_empty() -> None:
    """A handler taking one or three arguments gets (ws, headers, payload) when local is empty."""

    async def handler(*args: Any) -> dict[str, Any]:
        return {"payload": len(args)}

    assert (await serve(handler, {"access": lambda ws, m, local: True}))["payload"] == 3


@pytest.mark.parametrize("sync", [False, True])
async def test_hydrate_feeds_handler(sync: bool) -> None:
    """hydrate(ws, message)'s value is the handler's only argument, even when local is filled."""

    def hydrate(ws: Any, message: Any) -> Any:
        return {"hydrated": message.payload}

    def check(message: Any, local: dict[str, Any]) -> bool:
        local["x"] = 1
        return True

    async def handler(value: Any) -> dict[str, Any]:
        return {"payload": value}

    reply = await serve(handler, {"hydrate": maybe_sync(hydrate, sync), "data_check": check}, 7)
    assert reply["payload"] == {"hydrated": 7}


@pytest.mark.parametrize("sync", [False, True])
@pytest.mark.parametrize(
    ("status", "dehydrated"), [(200, True), (204, True), (404, False), (500, False), (302, False)]
)
async def test_dehydrate_only_on_2xx(sync: bool, status: int, dehydrated: bool) -> None:
    """dehydrate replaces the payload only when 200 <= status < 300."""

    def dehydrate(payload: Any) -> Any:
        return {"public": payload["id"]}

    async def handler(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"status": status, "payload": {"id": 1, "secret": "s"}}

    reply = await serve(handler, {"dehydrate": maybe_sync(dehydrate, sync)})
    assert reply["status"] == status
    assert reply["payload"] == ({"public": 1} if dehydrated else {"id": 1, "secret": "s"})


async def test_sync_hooks_run_off_the_loop_thread() -> None:
    """Plain-def hooks and handlers run in a worker thread, never on the loop's thread."""
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    def check(message: Any) -> bool:
        threads["data_check"] = threading.get_ident()
        return True

    def access(ws: Any, message: Any) -> bool:
        threads["access"] = threading.get_ident()
        return True

    def hydrate(ws: Any, message: Any) -> int:
        threads["hydrate"] = threading.get_ident()
        return 1

    def dehydrate(payload: Any) -> Any:
        threads["dehydrate"] = threading.get_ident()
        return payload

    def handler(value: Any) -> dict[str, Any]:
        threads["handler"] = threading.get_ident()
        return {"payload": value}

    options = {"data_check": check, "access": access, "hydrate": hydrate, "dehydrate": dehydrate}
    assert (await serve(handler, options))["payload"] == 1
    assert set(threads) == {"data_check", "access", "hydrate", "dehydrate", "handler"}
    assert loop_thread not in threads.values()


async def test_async_hooks_run_on_the_loop_thread() -> None:
    """`async def` hooks run on the loop itself, with no thread hop."""
    loop_thread = threading.get_ident()
    seen: list[int] = []

    async def handler(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        seen.append(threading.get_ident())
        return {}

    await serve(handler)
    assert seen == [loop_thread]


class Boom(Exception):
    pass


SECRET = "secret-detail-1234"


def _raise(*args: Any) -> Any:
    raise Boom(SECRET)


@pytest.mark.parametrize("sync", [False, True])
@pytest.mark.parametrize("hook", ["data_check", "access", "hydrate", "dehydrate", "handler"])
async def test_exception_in_any_hook_is_500_logged_once(
    hook: str, sync: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising hook or handler is a 500 "internal server error", logged once with route, uuid."""
    options: dict[str, Any] = {}
    for name, ok in [
        ("data_check", lambda m: True),
        ("access", lambda ws, m: True),
        ("hydrate", lambda ws, m: 1),
        ("dehydrate", lambda p: p),
    ]:
        options[name] = maybe_sync(_raise if name == hook else ok, sync)

    def good(value: Any) -> dict[str, Any]:
        return {"payload": value}

    handler = maybe_sync(_raise if hook == "handler" else good, sync)
    caplog.set_level(logging.ERROR, logger="observable_socket_asgi")
    reply = await serve(handler, options, uuid="uuid-77")
    assert reply == {
        "uuid": "uuid-77",
        "status": 500,
        "headers": {},
        "payload": {"message": "internal server error"},
    }
    assert SECRET not in orjson.dumps(reply).decode()
    records = [r for r in caplog.records if r.name.startswith("observable_socket_asgi")]
    assert len(records) == 1
    text = records[0].getMessage()
    assert "'r'" in text and "uuid-77" in text
    assert records[0].exc_info is not None and records[0].exc_info[0] is Boom


@pytest.mark.parametrize(
    "result",
    [
        None,
        [1, 2],
        "ok",
        200,
        {"status": "x"},
        {"status": True},
        {"status": 99},
        {"status": 600},
        {"headers": [1]},
        {"headers": "h"},
    ],
)
async def test_bad_result_is_500(result: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A handler result that is not a result mapping answers 500 and is logged."""

    async def handler(ws: Any, headers: Any, payload: Any) -> Any:
        return result

    caplog.set_level(logging.ERROR, logger="observable_socket_asgi")
    reply = await serve(handler, uuid=4)
    assert (reply["uuid"], reply["status"]) == (4, 500)
    assert reply["payload"] == {"message": "internal server error"}
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


@pytest.mark.parametrize(
    ("result", "keys"),
    [
        ({"sum": 10}, "'sum'"),
        ({"status": 201, "payload": 1, "data": 2, "Status": 3}, "'Status', 'data'"),
    ],
)
async def test_result_with_unknown_keys_is_500_logged_with_the_keys(
    result: dict[str, Any], keys: str, caplog: pytest.LogCaptureFixture
) -> None:
    """{"sum": 10} is a mistake, not a 200 with a null payload: 500, logged with the keys,
    the route, the uuid and the client address as fields."""

    class Peer:
        client = ("10.1.2.3", 4567)

    async def handler(ws: Any, headers: Any, payload: Any) -> Any:
        return result

    caplog.set_level(logging.ERROR, logger="observable_socket_asgi")
    router = SocketRouter()
    route = router.add_route("math/sum", handler)
    reply = orjson.loads(await run(route, Peer(), Request("u-9", "math/sum", None, [1])))
    assert (reply["status"], reply["payload"]) == (500, {"message": "internal server error"})
    [record] = caplog.records
    assert record.getMessage() == (
        f"route 'math/sum' (uuid 'u-9'): handler returned the key(s) {keys}; a result has only "
        "'status', 'headers' and 'payload' (put the data under 'payload')"
    )
    fields = (record.route, record.uuid, record.client)  # type: ignore[attr-defined]
    assert fields == ("math/sum", "u-9", "10.1.2.3:4567")


async def test_handler_exception_record_carries_route_uuid_and_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A raising handler's record has route, uuid and client (unknown without a scope)."""
    caplog.set_level(logging.ERROR, logger="observable_socket_asgi")
    await serve(_raise, uuid=5)
    [record] = caplog.records
    fields = (record.route, record.uuid, record.client)  # type: ignore[attr-defined]
    assert fields == ("r", 5, "unknown")


async def test_result_defaults() -> None:
    """An empty result is 200, headers {}, payload null; a null status or headers is the default."""

    async def handler(ws: Any, headers: Any, payload: Any) -> Any:
        return {"status": None, "headers": None}

    assert await serve(handler) == {"uuid": 1, "status": 200, "headers": {}, "payload": None}


@pytest.mark.parametrize(
    "result", [{"payload": {1, 2}}, {"payload": object()}, {"headers": {"h": object()}}]
)
async def test_unencodable_payload_is_500(result: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A reply orjson cannot encode answers 500 and is logged with the route and uuid."""

    async def handler(ws: Any, headers: Any, payload: Any) -> Any:
        return result

    caplog.set_level(logging.ERROR, logger="observable_socket_asgi")
    reply = await serve(handler, uuid="enc")
    assert (reply["uuid"], reply["status"]) == ("enc", 500)
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(records) == 1 and "enc" in records[0].getMessage()


async def test_handler_headers_are_sent() -> None:
    """Headers a handler returns go out in the reply."""

    async def handler(ws: Any, headers: Any, payload: Any) -> Any:
        return {"headers": {"x": 1}, "payload": []}

    assert await serve(handler) == {"uuid": 1, "status": 200, "headers": {"x": 1}, "payload": []}


# One request path: serve_request decides, the shell only frees bytes and writes


class FakeShell:
    """What a request needs of its connection, recorded: bytes freed, frames written."""

    def __init__(self) -> None:
        self.done: list[int] = []
        self.written: list[tuple[dict[str, Any], bool]] = []

    def request_done(self, nbytes: int) -> None:
        self.done.append(nbytes)

    async def write(self, frame: str, is_reply: bool, freed: int = 0) -> None:
        if freed:  # a reply frees its request's bytes in the same call
            self.done.append(freed)
        self.written.append((orjson.loads(frame), is_reply))


async def serve_once(
    router: SocketRouter, name: str, payload: Any = None, observer: Any = None
) -> FakeShell:
    """Serve one request on `router`'s route `name` through the one request path."""
    from observable_socket_asgi.server.pipeline import serve_observed, serve_request

    shell = FakeShell()
    runtime = router.runtime
    route = runtime.routes[name]
    from observable_socket_asgi.envelope import Envelope

    request = Envelope("u", name, {}, payload)  # as the protocol reads a frame
    if observer is None:
        await serve_request(runtime, route, WS, request, 42, shell)
    else:
        await serve_observed(observer, 0.0, runtime, route, WS, request, 42, shell)
    return shell


async def test_serve_request_frees_the_bytes_then_writes_the_reply() -> None:
    """A plain route and a hooked one take the same path: bytes freed once, one reply."""
    router = SocketRouter()

    @router.route("plain")
    async def plain(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("hooked", {"data_check": lambda m: m.payload == 1})
    async def hooked(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    shell = await serve_once(router, "plain", [1])
    assert shell.done == [42]
    assert shell.written == [({"uuid": "u", "status": 200, "headers": {}, "payload": [1]}, True)]
    try:
        shell = await serve_once(router, "hooked", 2)
    finally:
        router._executor.shutdown(wait=True)  # the sync data_check ran on it
    assert shell.done == [42] and shell.written[0][0]["status"] == 400


async def test_serve_request_answers_a_timeout_504_and_a_foreign_cancellation_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the route's timeout the reply is 504; a CancelledError the router did not cause
    (the handler awaited something cancelled elsewhere) is a logged 500, not silence."""
    router = SocketRouter()

    @router.route("slow", {"timeout": 0.001})
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    @router.route("foreign")
    async def foreign(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        elsewhere = asyncio.get_running_loop().create_future()
        elsewhere.cancel()
        await elsewhere
        return {}

    shell = await serve_once(router, "slow")
    assert shell.written[0][0]["status"] == 504 and shell.done == [42]
    shell = await serve_once(router, "foreign")
    assert shell.written[0][0]["status"] == 500 and shell.done == [42]
    assert "did not cause" in caplog.text


async def test_serve_observed_wraps_the_same_path() -> None:
    """With an observer the request is reported around the same path, with the status the
    reply carries."""
    from observable_socket_asgi.observe._observe import Observer

    class Seen(Observer):
        def __init__(self) -> None:
            self.events: list[Any] = []

        def request_started(self, route: str, headers: Any, started: float) -> Any:
            self.events.append(("started", route))
            return "token"

        def request_finished(self, token: Any, route: str, status: int | None) -> None:
            self.events.append(("finished", token, route, status))

    router = SocketRouter()

    @router.route("teapot")
    async def teapot(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"status": 418}

    seen = Seen()
    shell = await serve_once(router, "teapot", observer=seen)
    assert seen.events == [("started", "teapot"), ("finished", "token", "teapot", 418)]
    assert shell.written[0][0]["status"] == 418
