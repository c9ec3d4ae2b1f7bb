"""One connection driven in-process (ApplicationCommunicator): the error table, concurrency,
backpressure, push, and cleanup on disconnect."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

import orjson
import pytest

from observable_socket_asgi import SocketRouter, Status
from tests.helpers import (
    JS_FRAME,
    JS_PING,
    MS,
    TIMEOUT,
    Conversation,
    conversation,
    request,
    wait_until,
)


def make_router(**options: Any) -> SocketRouter:
    """A router with the routes the error-table tests need."""
    router = SocketRouter(**options)

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("math/sum")
    async def total(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"status": Status.OK, "payload": {"sum": sum(payload or [])}}

    @router.route("checked", {"data_check": lambda m: isinstance(m.payload, int)})
    async def checked(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("guarded", {"access": lambda ws, m: m.headers.get("token") == "ok"})
    async def guarded(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": "secret"}

    @router.route("boom")
    async def boom(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        raise RuntimeError("do not leak this")

    @router.route("forever")
    async def forever(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    return router


async def assert_still_open(conv: Any) -> None:
    """The connection still serves requests after an error."""
    assert await conv.ask(request("echo", [0], uuid="after")) == {
        "uuid": "after",
        "status": 200,
        "headers": {},
        "payload": [0],
    }


def message_of(reply: dict[str, Any]) -> str:
    assert set(reply["payload"]) == {"message"}, reply
    return str(reply["payload"]["message"])


# The error table of PROTOCOL.md, one row per test


@pytest.mark.parametrize("frame", ["not json", "{", b"\xff\xfe", ""])
async def test_not_json_is_400_uuid_null(frame: str | bytes) -> None:
    """A frame that is not JSON is answered 400 with uuid null, and the connection stays open."""
    async with conversation(make_router()) as conv:
        reply = await conv.ask(frame)
        assert (reply["uuid"], reply["status"], reply["headers"]) == (None, 400, {})
        message_of(reply)
        await assert_still_open(conv)


@pytest.mark.parametrize("frame", ["[]", "1", '"x"', "null"])
async def test_not_object_is_400_uuid_null(frame: str) -> None:
    """JSON that is not an object is answered 400 with uuid null."""
    async with conversation(make_router()) as conv:
        reply = await conv.ask(frame)
        assert (reply["uuid"], reply["status"]) == (None, 400)
        await assert_still_open(conv)


@pytest.mark.parametrize(
    ("frame", "uuid"),
    [
        ('{"uuid": "u1", "payload": 1}', "u1"),
        ('{"uuid": 7, "route": 5}', 7),
        ('{"uuid": true, "route": "echo"}', None),
        ('{"uuid": 1.5, "route": "echo"}', None),
        ('{"uuid": [1], "route": "echo"}', None),
        ('{"route": "echo"}', None),
        ('{"uuid": 2, "route": "echo", "headers": [1]}', 2),
    ],
)
async def test_bad_route_or_uuid_is_400(frame: str, uuid: Any) -> None:
    """A missing/non-string route or a bad uuid is 400, echoing the uuid if it is usable."""
    async with conversation(make_router()) as conv:
        reply = await conv.ask(frame)
        assert (reply["uuid"], reply["status"]) == (uuid, 400)
        await assert_still_open(conv)


async def test_unknown_route_is_404() -> None:
    """An unregistered route is 404 with "route not found: <route>" and the request's uuid."""
    async with conversation(make_router()) as conv:
        reply = await conv.ask(request("nope", uuid="u"))
        assert (reply["uuid"], reply["status"]) == ("u", 404)
        assert message_of(reply) == "route not found: nope"
        await assert_still_open(conv)


async def test_data_check_false_is_400() -> None:
    """data_check returning False is 400 with the request's uuid."""
    async with conversation(make_router()) as conv:
        reply = await conv.ask(request("checked", "x", uuid=11))
        assert (reply["uuid"], reply["status"]) == (11, 400)
        message_of(reply)
        assert (await conv.ask(request("checked", 0, uuid=12)))["payload"] == 0
        await assert_still_open(conv)


async def test_access_false_is_403() -> None:
    """access returning False is 403 with the request's uuid; the right token gets through."""
    async with conversation(make_router()) as conv:
        reply = await conv.ask(request("guarded", uuid=3, headers={"token": "bad"}))
        assert (reply["uuid"], reply["status"]) == (3, 403)
        message_of(reply)
        ok = await conv.ask(request("guarded", uuid=4, headers={"token": "ok"}))
        assert (ok["status"], ok["payload"]) == (200, "secret")
        await assert_still_open(conv)


async def test_handler_exception_is_500(caplog: pytest.LogCaptureFixture) -> None:
    """A raising handler is 500 "internal server error", nothing of the exception on the wire."""
    caplog.set_level(logging.ERROR, logger="observable_socket_asgi")
    async with conversation(make_router()) as conv:
        await conv.send(request("boom", uuid="b"))
        message = await conv.output()
        assert "do not leak" not in message["text"]
        reply = orjson.loads(message["text"])
        assert (reply["uuid"], reply["status"]) == ("b", 500)
        assert message_of(reply) == "internal server error"
        await assert_still_open(conv)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "'boom'" in errors[0].getMessage()


async def test_rate_limit_is_429_and_ping_is_never_limited() -> None:
    """Past rate_limit=(n, s) requests are 429 with their uuid; PING still gets PONG."""
    async with conversation(make_router(rate_limit=(3, 60.0))) as conv:
        for i in range(3):
            assert (await conv.ask(request("echo", i, uuid=i)))["status"] == 200
        reply = await conv.ask(request("echo", uuid="over"))
        assert (reply["uuid"], reply["status"]) == ("over", 429)
        message_of(reply)
        assert (await conv.ask(JS_PING))["route"] == "PONG"
        # still open: another limited request is answered, not dropped
        assert (await conv.ask(request("echo", uuid="again")))["status"] == 429


async def test_route_rate_limit_has_its_own_bucket() -> None:
    """A route's own rate_limit counts only that route's requests."""
    router = make_router()

    @router.route("limited", {"rate_limit": (1, 60.0)})
    async def limited(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {}

    async with conversation(router) as conv:
        assert (await conv.ask(request("limited", uuid=1)))["status"] == 200
        assert (await conv.ask(request("limited", uuid=2)))["status"] == 429
        await assert_still_open(conv)


async def test_handler_timeout_is_504() -> None:
    """A handler past handler_timeout is cancelled and answered 504 with its uuid."""
    cancelled = asyncio.Event()
    router = make_router(handler_timeout=50 * MS)

    @router.route("stuck")
    async def stuck(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    async with conversation(router) as conv:
        reply = await conv.ask(request("stuck", uuid="t"))
        assert (reply["uuid"], reply["status"]) == ("t", 504)
        message_of(reply)
        assert cancelled.is_set()
        await assert_still_open(conv)


async def test_route_timeout_overrides_router() -> None:
    """A route's `timeout` option applies to it alone."""
    router = SocketRouter()

    @router.route("stuck", {"timeout": 50 * MS})
    async def stuck(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async with conversation(router) as conv:
        assert (await conv.ask(request("stuck", uuid=1)))["status"] == 504


async def test_oversized_frame_is_413() -> None:
    """A frame over max_message_bytes is 413, with its uuid when parseable, else null."""
    async with conversation(make_router(max_message_bytes=100)) as conv:
        reply = await conv.ask(request("echo", "x" * 200, uuid="big"))
        assert (reply["uuid"], reply["status"]) == ("big", 413)
        message_of(reply)
        reply = await conv.ask("y" * 200)
        assert (reply["uuid"], reply["status"]) == (None, 413)
        await assert_still_open(conv)


async def test_deep_nesting_is_400() -> None:
    """Deeply nested JSON is answered 400, the connection survives."""
    async with conversation(make_router()) as conv:
        deep = '{"uuid": 1, "route": "echo", "payload": ' + "[" * 3000 + "]" * 3000 + "}"
        assert (await conv.ask(deep))["status"] == 400
        await assert_still_open(conv)


# The contract's good path


async def test_js_frame_answered() -> None:
    """The JS client's exact frame is answered with its uuid, status 200 and headers {}."""
    async with conversation(make_router()) as conv:
        assert await conv.ask(JS_FRAME) == {
            "uuid": "a5e4e2e8-35c2-4b34-b40b-71faaf341206",
            "status": 200,
            "headers": {},
            "payload": {"sum": 10},
        }


async def test_binary_frame_answered_in_text() -> None:
    """A binary frame of UTF-8 JSON is served, and the answer is a text frame."""
    async with conversation(make_router()) as conv:
        await conv.send(request("echo", "é", uuid=5).encode())
        message = await conv.output()
        assert message["type"] == "websocket.send" and "text" in message
        assert orjson.loads(message["text"])["payload"] == "é"


@pytest.mark.parametrize("payload", [0, False, "", [], {}])
async def test_falsy_payload_reaches_handler(payload: Any) -> None:
    """Falsy payloads come back as sent, not as {}."""
    async with conversation(make_router()) as conv:
        assert (await conv.ask(request("echo", payload)))["payload"] == payload


async def test_ping_pong_while_slow_handler_runs() -> None:
    """PING is answered PONG at once even while a handler of the connection is blocked."""
    async with conversation(make_router()) as conv:
        await conv.send(request("forever", uuid="slow"))
        pong = await conv.ask(JS_PING)
        assert pong == {
            "uuid": "12417fc9-fd23-4930-ac51-dab24404fea6",
            "route": "PONG",
            "status": 200,
            "headers": {},
            "payload": None,
        }


async def test_heartbeat_off_makes_ping_404() -> None:
    """With heartbeat=False, PING is an unknown route like any other."""
    async with conversation(make_router(heartbeat=False)) as conv:
        reply = await conv.ask(JS_PING)
        assert reply["status"] == 404 and "route" not in reply


async def test_slow_request_overtaken_by_fast_one() -> None:
    """A fast request sent after a slow one is answered first; the slow one still answers."""
    release = asyncio.Event()
    router = make_router()

    @router.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await release.wait()
        return {"payload": "slow"}

    async with conversation(router) as conv:
        await conv.send(request("slow", uuid="s"))
        assert (await conv.ask(request("echo", "fast", uuid="f")))["uuid"] == "f"
        release.set()
        assert await conv.reply() == {"uuid": "s", "status": 200, "headers": {}, "payload": "slow"}


async def test_max_in_flight_backpressure() -> None:
    """At max_in_flight the router reads up to max_in_flight frames ahead (to hear a
    disconnect) and holds them unparsed, then stops reading until a slot frees; nothing is
    dropped or answered early, and order is kept."""
    release = [asyncio.Event(), asyncio.Event()]
    router = make_router(max_in_flight=2)

    @router.route("wait")
    async def wait(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await release[payload].wait()
        return {"payload": payload}

    async with conversation(router) as conv:
        await conv.send(request("wait", 0, uuid="a"))
        await conv.send(request("wait", 1, uuid="b"))
        await conv.send(request("echo", "third", uuid="c"))
        await conv.send(request("echo", "fourth", uuid="d"))
        await conv.send(request("echo", "fifth", uuid="e"))
        # "c" and "d" are read ahead (on a loaded machine that may take a while) ...
        await wait_until(lambda: conv.comm.input_queue.qsize() == 1, what="two frames read ahead")
        assert await conv.nothing()  # ... but not served yet,
        # and the fifth frame is still waiting in the server's hands, unread
        assert conv.comm.input_queue.qsize() == 1
        release[1].set()
        assert (await conv.reply())["uuid"] == "b"
        assert (await conv.reply())["uuid"] == "c"
        assert (await conv.reply())["uuid"] == "d"
        assert (await conv.reply())["uuid"] == "e"
        assert conv.comm.input_queue.qsize() == 0
        release[0].set()
        assert (await conv.reply())["uuid"] == "a"
        assert await conv.nothing()


async def test_disconnect_at_max_in_flight_cancels_at_once() -> None:
    """A client that leaves while every slot is held by a handler that never finishes is
    heard anyway: its handlers are cancelled and the app returns."""
    cancelled: list[int] = []
    router = make_router(max_in_flight=2)

    @router.route("stuck")
    async def stuck(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(payload)
            raise
        return {}

    conv = Conversation(router)
    assert (await conv.connect())["type"] == "websocket.accept"
    await conv.send(request("stuck", 1, uuid=1))
    await conv.send(request("stuck", 2, uuid=2))
    assert await conv.nothing()
    await conv.comm.send_input({"type": "websocket.disconnect", "code": 1001})
    async with asyncio.timeout(TIMEOUT / 5):  # well before the communicator would cancel it
        while len(cancelled) < 2:  # noqa: ASYNC110 (the handlers' state, no event to wait on)
            await asyncio.sleep(5 * MS)
    await conv.comm.wait(TIMEOUT)
    assert sorted(cancelled) == [1, 2]
    assert router.connections == set()


async def test_errors_and_pongs_count_against_nothing_lost() -> None:
    """Many error frames in a row at max_in_flight=1 are all answered, in order."""
    async with conversation(make_router(max_in_flight=1)) as conv:
        for i in range(20):
            await conv.send("bad" if i % 2 else request("nope", uuid=i))
        statuses = [(await conv.reply())["status"] for _ in range(20)]
        assert statuses == [404, 400] * 10


async def test_push_has_fresh_server_uuid() -> None:
    """ws.push sends an unasked message with a new server uuid, before the request's reply."""
    router = make_router()

    @router.route("subscribe")
    async def subscribe(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await ws.push("news", {"n": 1}, headers={"h": 1})
        await ws.push("news", {"n": 2}, status=Status.CREATED)
        return {"payload": "ok"}

    async with conversation(router) as conv:
        await conv.send(request("subscribe", uuid="1"))
        first, second, reply = await conv.reply(), await conv.reply(), await conv.reply()
        assert first["route"] == "news" and first["payload"] == {"n": 1}
        assert first["headers"] == {"h": 1} and first["status"] == 200
        assert second["status"] == 201
        assert len({first["uuid"], second["uuid"], "1"}) == 3
        assert isinstance(first["uuid"], str)
        assert reply == {"uuid": "1", "status": 200, "headers": {}, "payload": "ok"}


async def test_push_from_outside_a_request() -> None:
    """A connection kept from a handler can be pushed to later, e.g. from another task."""
    router = make_router()
    kept: list[Any] = []

    @router.route("hello")
    async def hello(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        kept.append(ws)
        return {}

    async with conversation(router) as conv:
        await conv.ask(request("hello"))
        await kept[0].push("later", [1])
        push = await conv.reply()
        assert (push["route"], push["payload"]) == ("later", [1])


async def test_disconnect_cancels_in_flight_handlers() -> None:
    """On disconnect every in-flight handler sees CancelledError and the registry empties."""
    started = asyncio.Event()
    outcomes: list[str] = []
    router = make_router()

    @router.route("hold")
    async def hold(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            if payload == 2:
                started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise
        outcomes.append("finished")
        return {}

    async with conversation(router) as conv:
        for i in range(3):
            await conv.send(request("hold", i, uuid=i))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        assert len(router.connections) == 1
        await conv.disconnect()
        assert outcomes == ["cancelled"] * 3
        assert router.connections == set()
        assert conv.comm.future.done() and conv.comm.future.exception() is None


async def test_disconnect_read_right_behind_a_request_cancels_it() -> None:
    """A disconnect queued behind a request that just suspended still delivers CancelledError."""
    outcomes: list[str] = []
    router = make_router()

    @router.route("hold")
    async def hold(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise
        finally:
            outcomes.append("finally")
        return {}

    conv = Conversation(router)
    await conv.connect()
    # both messages are queued before the app runs again: the request has taken its first
    # step in the receive loop's task and suspended there, and a new reader reads the disconnect
    await conv.comm.send_input({"type": "websocket.receive", "text": request("hold")})
    await conv.comm.send_input({"type": "websocket.disconnect", "code": 1000})
    await conv.comm.wait(TIMEOUT)
    assert outcomes == ["cancelled", "finally"]
    assert router.connections == set()


async def test_disconnect_with_blocked_sync_handler_returns() -> None:
    """A plain-def handler still running at disconnect does not keep the connection alive."""
    import threading

    gate = threading.Event()
    router = make_router()

    @router.route("block")
    def block(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        gate.wait(TIMEOUT)
        return {}

    try:
        async with conversation(router) as conv:
            await conv.send(request("block"))
            assert await conv.nothing()
            await conv.disconnect()
            assert router.connections == set()
    finally:
        gate.set()


async def test_close_from_handler() -> None:
    """`await ws.close(code, reason)` sends the close frame and stops serving."""
    router = make_router()

    @router.route("bye")
    async def bye(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await ws.close(4000, "bye")
        return {}

    async with conversation(router) as conv:
        await conv.send(request("bye"))
        assert await conv.output() == {"type": "websocket.close", "code": 4000, "reason": "bye"}
        assert await conv.nothing()


async def test_asyncio_timeout_inside_handler() -> None:
    """asyncio.timeout() in a handler cancels the handler's own task, not the receive loop."""
    router = make_router()

    @router.route("timed")
    async def timed(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(20 * MS):
                await asyncio.Event().wait()
        except TimeoutError:
            return {"payload": "timed out"}
        return {"payload": "never"}

    async with conversation(router) as conv:
        await conv.send(request("timed", uuid=1))
        assert (await conv.ask(request("echo", "fast", uuid=2)))["uuid"] == 2
        assert (await conv.reply())["payload"] == "timed out"
        await assert_still_open(conv)


async def test_task_group_inside_handler() -> None:
    """A TaskGroup in a handler runs its children and propagates their failure as a 500."""
    router = make_router()

    @router.route("group")
    async def group(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        assert asyncio.current_task() is not None

        async def child(n: int) -> int:
            await asyncio.sleep(0)
            if n < 0:
                raise ValueError(n)
            return n * 2

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(n)) for n in payload]
        return {"payload": [t.result() for t in tasks]}

    async with conversation(router) as conv:
        assert (await conv.ask(request("group", [1, 2, 3])))["payload"] == [2, 4, 6]
        assert (await conv.ask(request("group", [1, -1])))["status"] == 500
        await assert_still_open(conv)


async def test_current_task_is_the_request_task() -> None:
    """Inside a handler, current_task() is the request's own task from start to end: a
    request that suspends keeps the task it started in, and the frames after it are read
    and served by another."""
    router = make_router()
    seen: list[Any] = []
    gate = asyncio.Event()

    @router.route("who")
    async def who(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        first = asyncio.current_task()
        await gate.wait()
        seen.append((first, asyncio.current_task()))
        return {}

    @router.route("reader")
    async def reader(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        seen.append(asyncio.current_task())
        return {}

    async with conversation(router) as conv:
        for _ in range(2):  # the server's task first, then a task the connection started
            await conv.send(request("who", uuid="w"))
            assert (await conv.ask(request("reader", uuid="r")))["uuid"] == "r"
            gate.set()
            assert (await conv.reply())["uuid"] == "w"
            gate.clear()
        reading, (first, later) = seen[0], seen[1]
        assert first is later and first is not reading
        reading, (first, later) = seen[2], seen[3]
        assert first is later and first is not reading


async def test_a_request_that_never_suspends_makes_no_task() -> None:
    """Answered in the task reading frames: no task is created for it."""
    router = make_router()
    async with conversation(router) as conv:
        await conv.ask(request("echo", 0))
        before = len(asyncio.all_tasks())
        for n in range(20):
            assert (await conv.ask(request("echo", n)))["payload"] == n
        assert len(asyncio.all_tasks()) == before


async def test_a_timeout_inside_a_suspended_request_cancels_that_request_only() -> None:
    """`asyncio.timeout()` entered in a handler's first step, expiring after it suspended,
    cancels that request's task, in the server's task or in one the connection started;
    the connection reads on."""
    router = make_router()

    @router.route("bounded")
    async def bounded(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(payload):
                await asyncio.Event().wait()
        except TimeoutError:
            return {"payload": "timed out"}
        return {}

    async with conversation(router) as conv:
        for _ in range(3):
            await conv.send(request("bounded", 0.05, uuid="b"))
            assert (await conv.ask(request("echo", 1, uuid="e")))["payload"] == 1
            assert await conv.reply() == {
                "uuid": "b",
                "status": 200,
                "headers": {},
                "payload": "timed out",
            }
        await assert_still_open(conv)


async def test_contextvars_a_handler_sets_do_not_reach_the_next_request() -> None:
    """Each request runs in a context of its own, whether it suspends or not."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    router = make_router()

    @router.route("set")
    async def set_var(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        before = var.get()
        var.set(payload)
        if payload == "suspends":
            await asyncio.sleep(0)
        return {"payload": [before, var.get()]}

    async with conversation(router) as conv:
        for value in ("quick", "suspends", "quick", "suspends"):
            assert (await conv.ask(request("set", value)))["payload"] == ["unset", value]


async def test_leaving_while_the_servers_task_finishes_a_request_cancels_it() -> None:
    """The client leaves while its request suspended in the server's own task: the request
    is cancelled and awaited before the app returns."""
    router = make_router()
    events: list[str] = []

    @router.route("hold")
    async def hold(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return {}

    conv = Conversation(router)
    await conv.connect()
    await conv.send(request("hold", uuid="h"))
    assert (await conv.ask(request("echo", 2)))["payload"] == 2
    await conv.disconnect()  # waits for the app to return
    assert events == ["cancelled"]
    assert conv.comm.future.done() and not conv.comm.future.cancelled()


async def test_the_server_cancelling_its_task_mid_request_still_cleans_up() -> None:
    """A server that cancels the app's task (a shutdown) while that task finishes a
    suspended request: the request is cancelled, the reading task stops and cleans up,
    and the cancellation reaches the server."""
    router = make_router()
    events: list[str] = []

    @router.route("hold")
    async def hold(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return {}

    conv = Conversation(router)
    await conv.connect()
    await conv.send(request("hold", uuid="h"))
    assert (await conv.ask(request("echo", 3)))["payload"] == 3
    before = {task for task in asyncio.all_tasks() if not task.done()}
    conv.comm.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await conv.comm.future
    assert events == ["cancelled"]
    await wait_until(lambda: all(task.done() for task in before - {asyncio.current_task()}))


async def test_sync_handler_does_not_block_others() -> None:
    """A blocking plain-def handler runs off the loop, so a fast request is answered meanwhile."""
    import threading

    gate = threading.Event()
    router = make_router()

    @router.route("block")
    def block(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        gate.wait(TIMEOUT)
        return {"payload": "unblocked"}

    async with conversation(router) as conv:
        await conv.send(request("block", uuid="b"))
        assert (await conv.ask(request("echo", 1, uuid="f")))["uuid"] == "f"
        gate.set()
        assert (await conv.reply())["payload"] == "unblocked"


async def test_peer_that_takes_no_frame_is_dropped_after_close_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A slow consumer whose transport never drains, not even for the 1013 close frame, is
    dropped once close_timeout has passed: the app returns and the registry is empty."""
    from observable_socket_asgi import ConnectionClosed
    from tests.helpers import ws_scope

    router = SocketRouter(max_queued_pushes=2, close_timeout=50 * MS)
    never = asyncio.Event()  # the peer never takes a frame: every send blocks
    attempted: list[str] = []
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    pushes: list[asyncio.Task[None]] = []

    @router.route("flood")
    async def flood(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        async def one(n: int) -> None:
            try:
                await ws.push("tick", n)
            except ConnectionClosed:
                pass

        pushes.extend(asyncio.get_running_loop().create_task(one(n)) for n in range(10))
        return {}

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        attempted.append(message["type"])
        if message["type"] in ("websocket.send", "websocket.close"):
            await never.wait()

    await inbox.put({"type": "websocket.connect"})
    await inbox.put({"type": "websocket.receive", "text": request("flood")})
    with caplog.at_level(logging.WARNING, logger="observable_socket_asgi"):
        async with asyncio.timeout(TIMEOUT):
            await router(ws_scope(), receive, send)  # type: ignore[arg-type]
    await asyncio.gather(*pushes)
    assert "websocket.close" in attempted
    assert router.connections == set()
    assert any("slow consumer" in r.getMessage() for r in caplog.records)


async def test_lifecycle_moves_only_forward(caplog: pytest.LogCaptureFixture) -> None:
    """OPEN -> CLOSING -> CLOSED, each move logged at debug; a move back is refused."""
    from observable_socket_asgi.server.connection import Connection, Lifecycle
    from observable_socket_asgi.testing import websocket_scope

    async def receive() -> Any:
        raise AssertionError("not read")

    async def send(message: Any) -> None:
        raise AssertionError("not written")

    conn = Connection(make_router().runtime, websocket_scope(), receive, send)
    assert not conn.closed
    with caplog.at_level(logging.DEBUG, logger="observable_socket_asgi.connection"):
        conn._set_lifecycle(Lifecycle.CLOSING)
        conn._set_lifecycle(Lifecycle.CLOSED)
    assert conn.closed
    assert "OPEN -> CLOSING" in caplog.text and "CLOSING -> CLOSED" in caplog.text
    for state in Lifecycle:
        with pytest.raises(RuntimeError, match="cannot go from CLOSED"):
            conn._set_lifecycle(state)


def test_scope_views_read_the_handshake() -> None:
    """Headers (case-insensitive), query, cookies, client, path and state come from the scope."""
    from observable_socket_asgi.datastructures import ScopeViews
    from observable_socket_asgi.testing import websocket_scope

    scope: dict[str, Any] = dict(
        websocket_scope(
            "/chat",
            headers=[(b"X-Token", b"abc"), (b"cookie", b"sid=42; theme=dark")],
            query_string=b"room=7",
        )
    )
    scope["client"] = ("10.0.0.1", 5000)
    views = ScopeViews(scope)
    assert views.headers["x-token"] == "abc"
    assert views.query_params["room"] == "7"
    assert views.cookies == {"sid": "42", "theme": "dark"}
    assert views.client is not None and views.client.host == "10.0.0.1"
    assert views.path == "/chat"
    views.state.user = "ada"
    assert scope["state"] == {"user": "ada"}


async def test_handlers_receive_the_socket_not_the_shell() -> None:
    """`ws` is the thin `Socket` (exported also as `Connection`, its 0.1 name): open while
    served, with the handshake's views; none of the serving machinery is on it."""
    from observable_socket_asgi import Connection, Socket
    from observable_socket_asgi.server.socket import Lifecycle

    router = make_router()
    seen: list[Any] = []

    @router.route("who")
    async def who(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        seen.append(ws)
        return {"payload": [ws.lifecycle.name, ws.closed, ws.path]}

    async with conversation(router) as conv:
        answer = await conv.ask(request("who"))
    assert answer["payload"] == ["OPEN", False, "/ws"]
    (ws,) = seen
    assert Connection is Socket and isinstance(ws, Socket)
    for internal in ("write", "run", "push_nowait", "request_done", "_protocol"):
        assert not hasattr(ws, internal), internal
    await wait_until(lambda: ws.lifecycle is Lifecycle.CLOSED)
    assert ws.closed and ws.close_code == 1000


async def test_a_closed_socket_refuses_push_and_subscribe() -> None:
    """Once the connection is over, `push()` and `subscribe()` raise ConnectionClosed, and
    `close()` does nothing."""
    from observable_socket_asgi import ConnectionClosed

    router = make_router()
    kept: list[Any] = []

    @router.route("keep")
    async def keep(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        kept.append(ws)
        return {}

    async with conversation(router) as conv:
        await conv.ask(request("keep"))
    (ws,) = kept
    await wait_until(lambda: ws.closed)
    with pytest.raises(ConnectionClosed):
        await ws.push("late", 1)
    with pytest.raises(ConnectionClosed):
        await ws.subscribe("news")
    await ws.close()
    assert router.backplane.subscribers("news") == 0


async def test_the_shell_is_a_subscriber_by_public_names() -> None:
    """What the topics hold is the shell, through public names only: `closed`, `member_id`
    (the same each time), `push_nowait` (written at once, no task), `on_close` (run once at
    the end, a failing callback logged and the rest still run)."""
    router = make_router()
    ran: list[str] = []

    async with conversation(router) as conv:
        await conv.ask(request("echo", 1))
        (conn,) = router.connections
        assert not conn.closed and conn.member_id == conn.member_id
        assert conn.push_nowait({"type": "websocket.send", "text": '{"x": 1}'}) is None
        assert await conv.reply() == {"x": 1}

        def failing() -> None:
            ran.append("failing")
            raise RuntimeError("cleanup failed")

        conn.on_close(failing)
        conn.on_close(lambda: ran.append("second"))
    await wait_until(lambda: conn.closed and len(ran) == 2)
    assert ran == ["failing", "second"]


class GatedPeer:
    """An ASGI peer whose sends of frames wait while `gate` is clear, or fail once `broken`.

    `kind` is what its `asgi_send` is: an `async def` (as servers' are), a plain function
    returning a coroutine, or one returning a plain Future.
    """

    def __init__(self, kind: str = "async def") -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.gate = asyncio.Event()
        self.gate.set()
        self.broken = False
        self.sent: list[Any] = []
        self.as_future = kind == "future"
        self.asgi_send: Any = self._send if kind == "async def" else self.send
        # the tasks a plain-future send waits on the gate with (the loop holds tasks weakly)
        self.waiters: set[asyncio.Task[Literal[True]]] = set()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    def send(self, message: dict[str, Any]) -> Any:
        if not self.as_future:
            return self._send(message)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def take(_: object = None) -> None:
            self._take(message)
            future.set_result(None)

        if self.gate.is_set():
            take()
        else:
            self.waiters.add(waiter := asyncio.ensure_future(self.gate.wait()))
            waiter.add_done_callback(take)
            waiter.add_done_callback(self.waiters.discard)
        return future

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await self.gate.wait()
            if self.broken:
                raise OSError("the peer is gone")
        self._take(message)

    def _take(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self.sent.append(orjson.loads(message["text"]))


async def served(router: SocketRouter, peer: GatedPeer) -> tuple[asyncio.Task[None], Any]:
    """Serve one more connection to `peer`; return the serving task and the connection."""
    from tests.helpers import ws_scope

    before = set(router.connections)
    await peer.inbox.put({"type": "websocket.connect"})
    task = asyncio.create_task(router(ws_scope(), peer.receive, peer.asgi_send))  # type: ignore[arg-type]
    await wait_until(lambda: len(router.connections) == len(before) + 1)
    (conn,) = set(router.connections) - before
    return task, conn


def push(n: int) -> dict[str, Any]:
    return {"type": "websocket.send", "text": orjson.dumps({"n": n}).decode()}


@pytest.mark.parametrize("kind", ["async def", "coroutine", "future"])
async def test_a_push_whose_send_waits_finishes_in_a_task(kind: str) -> None:
    """A push the server cannot take at once goes on in a task, the pushes behind it queue,
    and once it is written the next push is written at once again, in order; a server whose
    send is a plain function returning a coroutine or a Future is served the same way."""
    router = make_router()
    peer = GatedPeer(kind)
    task, conn = await served(router, peer)
    assert conn.push_nowait(push(0)) is None
    peer.gate.clear()
    waiting = conn.push_nowait(push(1))
    assert isinstance(waiting, asyncio.Task)
    assert conn.push_nowait(push(2)) is None  # queued behind the write in progress
    assert peer.sent == [{"n": 0}]
    peer.gate.set()
    await waiting
    await wait_until(lambda: len(peer.sent) == 3)
    assert conn.push_nowait(push(3)) is None
    assert peer.sent == [{"n": n} for n in range(4)]
    await peer.inbox.put({"type": "websocket.disconnect", "code": 1000})
    await task


async def test_a_push_whose_waiting_send_is_cancelled_leaves_the_next_push_written() -> None:
    """Cancelling the task of a push that waits frees the writer: the next push is written
    at once, and the connection stays open."""
    router = make_router()
    peer = GatedPeer()
    task, conn = await served(router, peer)
    peer.gate.clear()
    waiting = conn.push_nowait(push(1))
    assert isinstance(waiting, asyncio.Task)
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    peer.gate.set()
    assert conn.push_nowait(push(2)) is None
    assert peer.sent == [{"n": 2}] and not conn.closed
    await peer.inbox.put({"type": "websocket.disconnect", "code": 1000})
    await task


@pytest.mark.parametrize("kind", ["async def", "coroutine"])
@pytest.mark.parametrize("waits", [False, True], ids=["at-once", "after-waiting"])
async def test_a_push_whose_send_fails_closes_the_connection(waits: bool, kind: str) -> None:
    """A push the server fails to write (the peer is gone) closes the connection, whether
    the send failed at once or after waiting; nothing more is pushed."""
    router = make_router()
    peer = GatedPeer(kind)
    task, conn = await served(router, peer)
    if waits:
        peer.gate.clear()
        waiting = conn.push_nowait(push(1))
        assert isinstance(waiting, asyncio.Task)
        peer.broken = True
        peer.gate.set()
        with pytest.raises(OSError):
            await waiting
    else:
        peer.broken = True
        assert conn.push_nowait(push(1)) is None
    assert conn.closed
    assert conn.push_nowait(push(2)) is None
    await peer.inbox.put({"type": "websocket.disconnect", "code": 1006})
    await task
    assert peer.sent == []


async def test_push_each_pushes_to_every_subscriber_in_one_call() -> None:
    """`push_each` is `push_nowait` for a whole slice: open connections get the push at once,
    a closed one is skipped, a subscriber of another class gets its own `push_nowait`, and
    the sends that had to wait come back as tasks."""
    from tests.fake_subscribers import FakeSubscriber

    router = make_router()
    peers = [GatedPeer() for _ in range(3)]
    served_ = [await served(router, peer) for peer in peers]
    (task0, first), (task1, second), (task2, third) = served_
    await third.close()
    fake = FakeSubscriber()
    peers[1].gate.clear()
    waiting = type(first).push_each([first, second, fake, third], push(1))
    assert peers[0].sent == [{"n": 1}] and peers[2].sent == []
    assert fake.frames == ['{"n":1}']
    assert len(waiting) == 1 and isinstance(waiting[0], asyncio.Task)
    peers[1].gate.set()
    await waiting[0]
    assert peers[1].sent == [{"n": 1}]
    for peer in peers:
        await peer.inbox.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.gather(task0, task1, task2)
