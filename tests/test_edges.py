"""The promises at the edges, tried as an attacker would, on real uvicorn.

Each test stands for one way a client (hostile, broken or merely slow) could make the server
break a promise: answer nothing, hold memory in proportion to what it sends, stall the other
connections, or close with a code the JS client reads the wrong way. Memory is read from the
server process's own RSS (`tests.edge_apps.Child`) with generous bounds; the heaviest cases
carry the `heavy` mark (`.ci/run` runs them; `-m "not heavy"` skips them locally).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from observable_socket_asgi import SocketRouter
from tests.edge_apps import Child, RawClient, child, raw_client
from tests.helpers import JS_PING, MS, TIMEOUT, Server, request

MIB = 1024 * 1024


def make_router(counts: dict[str, int] | None = None, **options: Any) -> SocketRouter:
    """echo, handlers that meet a cancellation they did not cause, and one that never ends
    (counted in `counts["cancelled"]` when the router cancels it)."""
    router = SocketRouter(**options)
    counts = {} if counts is None else counts
    counts["cancelled"] = 0

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("cancelled/now")
    async def cancelled_now(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        # a shared result someone else cancelled before this request came: fails at once
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        await fut
        return {}

    @router.route("cancelled/later")
    async def cancelled_later(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        # a "fetch once" task another request leads, cancelled while this one waits on it
        leader = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        asyncio.get_running_loop().call_soon(leader.cancel)
        await leader
        return {}

    @router.route("stuck")
    async def stuck(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            counts["cancelled"] += 1
            raise
        return {}

    return router


async def ask(ws: Any, frame: str | bytes) -> dict[str, Any]:
    await ws.send(frame)
    async with asyncio.timeout(TIMEOUT):
        reply: dict[str, Any] = orjson.loads(await ws.recv())
    return reply


async def eventually(server: Server, fn: Any, expected: Any, within: float = TIMEOUT) -> None:
    """Poll `fn()` on the server's loop until it equals `expected`, within a bounded time."""
    value: Any = None
    try:
        async with asyncio.timeout(within):
            while (value := await asyncio.to_thread(server.call, fn)) != expected:  # noqa: ASYNC110
                await asyncio.sleep(10 * MS)
    except TimeoutError:
        raise AssertionError(f"{fn} stayed {value!r}, expected {expected!r}") from None


async def close_of(ws: Any) -> tuple[int, str]:
    """Read until the server closes; return its close code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    assert info.value.rcvd is not None, info.value
    return info.value.rcvd.code, info.value.rcvd.reason


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_request(depth: int, uuid: str) -> str:
    """An echo request whose payload nests `depth` arrays (orjson cannot write past 254)."""
    return f'{{"uuid":"{uuid}","route":"echo","payload":{"[" * depth}{"]" * depth}}}'


# 1. A CancelledError the router did not cause


async def test_foreign_cancellation_is_answered_500_and_frees_the_slot(serve: Any) -> None:
    """70 requests whose handler meets someone else's cancellation, before and after its first
    suspension, are each answered 500 with their uuid; the connection keeps serving (PING,
    echo) past 64 of them, and the client that leaves is cleaned up."""
    app = make_router()
    server = serve(app)
    async with connect(server.url) as ws:
        for route in ("cancelled/now", "cancelled/later"):
            for n in range(70):
                await ws.send(request(route, uuid=f"{route}-{n}"))
            answers: dict[str, int] = {}
            async with asyncio.timeout(TIMEOUT):
                while len(answers) < 70:
                    reply = orjson.loads(await ws.recv())
                    answers[reply["uuid"]] = reply["status"]
            assert answers == {f"{route}-{n}": 500 for n in range(70)}
        assert (await ask(ws, JS_PING))["route"] == "PONG"
        assert (await ask(ws, request("echo", 7, uuid="after")))["payload"] == 7
    await eventually(server, lambda: len(app.connections), 0)


async def test_foreign_cancellation_is_logged_once_with_route_and_uuid(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Each such request leaves one ERROR record naming its route and uuid."""
    server = serve(make_router())
    with caplog.at_level(logging.ERROR, logger="observable_socket_asgi"):
        async with connect(server.url) as ws:
            assert (await ask(ws, request("cancelled/later", uuid="cx-1")))["status"] == 500
            assert (await ask(ws, request("cancelled/now", uuid="cx-2")))["status"] == 500
    for uuid, route in (("cx-1", "cancelled/later"), ("cx-2", "cancelled/now")):
        records = [r for r in caplog.records if uuid in r.getMessage()]
        assert len(records) == 1, caplog.text
        assert route in records[0].getMessage()


# 2. The refusal of an oversized frame costs a prefix, not the frame


def _flat_objects(size: int, uuid: str) -> bytes:
    head = b'{"uuid":"' + uuid.encode() + b'","route":"echo","payload":['
    count = (size - len(head)) // 3
    return head + b"{}," * count + b"{}]}"


@pytest.mark.heavy
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflate"])
def test_oversized_frame_is_refused_without_parsing_it(ws_impl: str, compressed: bool) -> None:
    """15 MiB of `[{},{},...]` (15 KiB once deflated) over the 1 MiB limit is answered 413
    with its uuid, and the server's peak RSS grows by what uvicorn holds of the frame, not by
    the half gigabyte a parse of it takes."""
    frame = _flat_objects(15 * MIB, "big-1")

    async def scenario(server: Child) -> int:
        async with raw_client(server.port, deflate=compressed) as client:
            server.reset_peak()
            before = server.rss()
            if compressed:
                assert client.send_compressed_text(frame) < 64 * 1024
            else:
                client.send_frame(frame)
            reply = await client.recv_json()
            assert (reply["uuid"], reply["status"]) == ("big-1", 413)
            return server.peak() - before

    with child(ws_impl) as server:
        grown = asyncio.run(scenario(server))
    # uvicorn itself keeps the frame's bytes and its decoded text (about 3 x 15 MiB); a parse
    # took +490 MB more.
    assert grown < 160 * MIB, f"server peak grew by {grown / MIB:.0f} MiB"


# 3. Memory per connection is bounded in bytes


@pytest.mark.heavy
def test_clients_that_do_not_read_cost_at_most_their_byte_budget(ws_impl: str) -> None:
    """Eight clients that send 1 MiB echo requests and never read: the server holds about a
    byte budget for each (requests read, replies not yet taken), not 64 requests and their
    replies each."""
    clients, frames_each = 8, 40
    payload = b"x" * (MIB - 100)

    async def scenario(server: Child) -> int:
        async with contextlib.AsyncExitStack() as stack:
            raws = [
                await stack.enter_async_context(raw_client(server.port)) for _ in range(clients)
            ]
            return await flood_all(server, raws)

    async def flood_all(server: Child, raws: list[RawClient]) -> int:
        sent = [0] * clients
        server.reset_peak()
        before = server.rss()

        async def flood(index: int) -> None:
            raw = raws[index]
            for n in range(frames_each):
                raw.send_frame(b'{"uuid":%d,"route":"echo","payload":"%s"}' % (n, payload))
                await raw.writer.drain()
                sent[index] += 1

        tasks = [asyncio.ensure_future(flood(i)) for i in range(clients)]
        # wait until every client is done or blocked by TCP backpressure (no progress)
        last: list[int] = []
        async with asyncio.timeout(60 * TIMEOUT):
            while not all(task.done() for task in tasks):
                await asyncio.sleep(200 * MS)
                if sent == last:
                    break
                last = list(sent)
        grown = server.peak() - before
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return grown

    # uvicorn's legacy `websockets` implementation reads up to `ws_max_queue` (32) messages
    # ahead on its own, whatever the app reads: the README tells deployers to lower it
    uvicorn_options = {"ws_max_queue": 2} if ws_impl == "websockets" else {}
    with child(ws_impl, uvicorn_options) as server:
        grown = asyncio.run(scenario(server))
    # default budget 4 MiB each, plus what uvicorn holds (a frame in, a frame out) and
    # allocator slack; before the budget this was +600 MB
    assert grown < clients * 12 * MIB + 64 * MIB, f"server peak grew by {grown / MIB:.0f} MiB"


async def test_slow_subscriber_is_closed_by_bytes_not_frame_count(serve: Any) -> None:
    """A subscriber that does not read, fed 100 KiB pushes: once the pushes queued for it pass
    the byte budget it is closed 1013 (slow consumer), long before 1,024 frames."""
    # The close frame waits behind the pushes the subscriber has not read, until the test
    # reads them after publishing: however long the publishing takes on a busy machine, the
    # router must not give up on the close (close_timeout) and drop the socket first.
    app = make_router(close_timeout=60 * TIMEOUT)

    @app.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await ws.subscribe("feed")
        return {"payload": "joined"}

    server = serve(app)
    body = "y" * (100 * 1024)
    async with raw_client(server.port) as raw:
        raw.send_frame(request("join", uuid="j").encode())
        assert (await raw.recv_json())["payload"] == "joined"
        async with connect(server.url) as publisher:
            for n in range(200):  # 20 MiB in all
                await asyncio.to_thread(
                    server.call, lambda n=n: asyncio.ensure_future(app.publish("feed", [n, body]))
                )
        # the frames already in the kernel come first; then the close
        code = None
        async with asyncio.timeout(TIMEOUT):
            while code is None:
                opcode, data = await raw.recv()
                if opcode == 0x8:
                    code = int.from_bytes(data[:2], "big")
    assert code == 1013
    del publisher


# 4. A client that leaves while every slot is held, with default settings


async def test_client_leaving_with_every_slot_stuck_is_cleaned_up(serve: Any) -> None:
    """64 handlers that never return hold every slot; the client sends a few more frames and
    leaves: with default settings the connection and its handlers are gone soon after."""
    counts: dict[str, int] = {}
    app = make_router(counts)
    server = serve(app)
    async with connect(server.url, close_timeout=TIMEOUT) as ws:
        for n in range(64 + 5):
            await ws.send(request("stuck", uuid=n))
        await eventually(server, lambda: len(app.connections), 1)
    await eventually(server, lambda: len(app.connections), 0)
    await eventually(server, lambda: counts["cancelled"], 64)


# 5. Topic limits


def topic_router(**options: Any) -> SocketRouter:
    from observable_socket_asgi import SubscriptionLimitError

    app = make_router(**options)

    @app.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            for topic in payload:
                await ws.subscribe(topic)
        except SubscriptionLimitError as exc:
            return {"status": exc.status, "payload": {"message": str(exc)}}
        return {"payload": len(payload)}

    return app


async def test_topic_name_length_and_count_are_limited(serve: Any) -> None:
    """A 1 MB topic name and the topic past `max_topics` are refused with a clear error the
    handler turns into a 4xx; what was within the limits stays subscribed."""
    app = topic_router(max_topics=10, max_topic_bytes=64)
    server = serve(app)
    async with connect(server.url) as ws:
        long_name = await ask(ws, request("join", ["t" * 1_000_000], uuid="long"))
        assert 400 <= long_name["status"] < 500
        assert "64" in long_name["payload"]["message"]
        assert (await ask(ws, request("join", [f"t{n}" for n in range(10)], uuid="ten")))[
            "payload"
        ] == 10
        over = await ask(ws, request("join", ["eleventh"], uuid="over"))
        assert 400 <= over["status"] < 500 and "10" in over["payload"]["message"]
        assert await asyncio.to_thread(server.call, lambda: len(app.backplane.topics)) == 10


def test_topic_limits_have_documented_defaults() -> None:
    """Both limits are on by default, and nonsense values are refused at construction."""
    router = SocketRouter()
    assert router.settings.max_topics == 1024
    assert router.settings.max_topic_bytes == 1024
    with pytest.raises(ValueError, match="max_topics"):
        SocketRouter(max_topics=0)


# 6. A publish to many subscribers shares the loop


async def test_publish_to_many_subscribers_keeps_order_over_uvicorn(serve: Any) -> None:
    """Every subscriber gets every publish, in publish order, when a publish is handed out in
    several slices."""
    app = topic_router()
    server = serve(app)
    subscribers = [await connect(server.url) for _ in range(40)]
    try:
        for ws in subscribers:
            assert (await ask(ws, request("join", ["wave"], uuid="j")))["payload"] == 1
        for n in range(5):
            await asyncio.to_thread(
                server.call, lambda n=n: asyncio.ensure_future(app.publish("wave", n))
            )
        for ws in subscribers:
            got = [
                orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["payload"]
                for _ in range(5)
            ]
            assert got == [0, 1, 2, 3, 4]
    finally:
        for ws in subscribers:
            await ws.close()


# 8. JSON edges


async def test_lone_surrogate_is_answered_with_its_uuid(serve: Any) -> None:
    """`"\\ud800"` (what `JSON.stringify` writes for a broken string) in a text frame, and the
    raw surrogate bytes in a binary frame: 400 with the request's uuid, naming the cause."""
    server = serve(make_router())
    async with connect(server.url) as ws:
        text = await ask(ws, '{"uuid":"sur-1","route":"echo","payload":"a\\ud800b"}')
        assert (text["uuid"], text["status"]) == ("sur-1", 400)
        assert "surrogate" in text["payload"]["message"]
        raw = await ask(ws, b'{"uuid":"sur-2","route":"echo","payload":"\xed\xa0\x80"}')
        assert (raw["uuid"], raw["status"]) == ("sur-2", 400)
        assert (await ask(ws, request("echo", "fine", uuid="sur-3")))["status"] == 200


async def test_what_the_parser_accepts_can_be_echoed(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload as deep as allowed is echoed; deeper (up to the 1,024 levels orjson parses)
    is a 400 at parse time with its uuid, never a 500 and an ERROR log."""
    from observable_socket_asgi._scan import MAX_DEPTH

    server = serve(make_router())
    with caplog.at_level(logging.ERROR, logger="observable_socket_asgi"):
        async with connect(server.url) as ws:
            ok = await ask(ws, request("echo", nested(MAX_DEPTH - 1), uuid="deep-ok"))
            assert ok["status"] == 200 and ok["payload"] == nested(MAX_DEPTH - 1)
            for depth in (MAX_DEPTH, 255, 1000):
                reply = await ask(ws, nested_request(depth, f"deep-{depth}"))
                assert (reply["uuid"], reply["status"]) == (f"deep-{depth}", 400)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# 9. The rate limit counts every frame that makes the server work


async def test_rate_limit_counts_unknown_routes_and_malformed_frames(serve: Any) -> None:
    """Unknown routes and malformed frames draw on the bucket (429 with the uuid when it can
    be read); PING never does; a client that keeps going is closed 1008."""
    # close_timeout: uvicorn's legacy `websockets` implementation lets the close frame out only
    # when the close call is given up on
    server = serve(make_router(rate_limit=(5, 60.0), close_timeout=100 * MS))
    async with connect(server.url) as ws:
        statuses = [(await ask(ws, request("nope", uuid=n)))["status"] for n in range(5)]
        assert statuses == [404] * 5
        assert (await ask(ws, request("nope", uuid="x")))["status"] == 429
        broken = await ask(ws, '{"uuid":"m-1","route":')
        assert (broken["uuid"], broken["status"]) == ("m-1", 429)
        assert (await ask(ws, JS_PING))["route"] == "PONG"
        with contextlib.suppress(ConnectionClosed):
            for n in range(50):  # past 10 refusals in the window (the floor; the limit is 5)
                await ws.send(request("nope", uuid=f"flood-{n}"))
        assert await close_of(ws) == (1008, "rate limit exceeded")


# 10. Close codes the JS client agrees with


def _retry_after(exc: InvalidStatus) -> int:
    value = exc.response.headers.get("Retry-After")
    assert value is not None, exc.response.headers
    return int(value)


def _ours(record: logging.LogRecord) -> bool:
    """A record of the router's, not asyncio's debug-mode "Executing <Task ...> took" warning
    (whose task repr names the test, and so the words the tests look for)."""
    return record.name.startswith("observable_socket_asgi")


async def test_over_max_connections_is_refused_before_accept_with_503(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Past `max_connections` the handshake is refused: HTTP 503 with Retry-After, no open
    (so the JS client backs off instead of reconnecting every second), logged once."""
    server = serve(make_router(max_connections=1))
    with caplog.at_level(logging.WARNING, logger="observable_socket_asgi"):
        async with connect(server.url) as first:
            with pytest.raises(InvalidStatus) as info:
                async with connect(server.url):
                    pass
            assert info.value.response.status_code == 503
            assert _retry_after(info.value) >= 1
            assert (await ask(first, request("echo", 1)))["payload"] == 1
    refusals = [r for r in caplog.records if _ours(r) and "max_connections" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert "127.0.0.1" in refusals[0].getMessage()


async def test_access_logic_error_is_retryable_never_1011(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in access_logic (a database briefly down) refuses the handshake with 503,
    never a 1011 that strands the browser tab; logged with the client and the traceback."""

    async def access_logic(ws: Any) -> bool:
        raise ConnectionError("database is down")

    server = serve(make_router(access_logic=access_logic))
    with caplog.at_level(logging.WARNING, logger="observable_socket_asgi"):
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url):
                pass
    assert info.value.response.status_code == 503
    assert _retry_after(info.value) >= 1
    records = [r for r in caplog.records if _ours(r) and "access_logic" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is not None
    assert "127.0.0.1" in records[0].getMessage()


async def test_access_logic_false_closes_1008_and_is_logged(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """`access_logic` returning False: accept, close 1008 (never come back), one warning."""
    server = serve(make_router(access_logic=lambda ws: False))
    with caplog.at_level(logging.WARNING, logger="observable_socket_asgi"):
        async with connect(server.url) as ws:
            assert await close_of(ws) == (1008, "access denied")
    records = [r for r in caplog.records if _ours(r) and "access_logic said no" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert "127.0.0.1" in records[0].getMessage()


async def test_slow_access_logic_is_refused_before_accept(serve: Any) -> None:
    """access_logic past handshake_timeout is transient: 503 before accept, not a close."""

    async def access_logic(ws: Any) -> bool:
        await asyncio.sleep(10 * TIMEOUT)
        return True

    server = serve(make_router(access_logic=access_logic, handshake_timeout=50 * MS))
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url):
            pass
    assert info.value.response.status_code == 503


async def test_handshake_rate_spreads_a_reconnect_wave(serve: Any) -> None:
    """With `handshake_rate=(3, 60)`, a wave of 8 handshakes gets 3 opens and 5 refusals
    (503 with Retry-After) instead of 8 opens at once."""
    server = serve(make_router(handshake_rate=(3, 60.0)))
    opened: list[Any] = []
    refused = 0
    for _ in range(8):
        try:
            opened.append(await connect(server.url))
        except InvalidStatus as exc:
            assert exc.response.status_code == 503 and _retry_after(exc) >= 1
            refused += 1
    assert (len(opened), refused) == (3, 5)
    for ws in opened:
        await ws.close()


async def test_refusal_without_the_denial_extension_closes_before_accept() -> None:
    """A server that does not offer `websocket.http.response` gets a close before accept
    (an HTTP 403 to the client), never an accept then 1013."""
    from tests.helpers import Conversation, ws_scope

    app = make_router(max_connections=1)
    scope = ws_scope()
    scope.pop("extensions", None)
    first = Conversation(app, scope)
    assert (await first.connect())["type"] == "websocket.accept"
    second = Conversation(app, dict(scope))
    assert (await second.connect())["type"] == "websocket.close"
    await second.comm.wait(TIMEOUT)
    await first.disconnect()


# 7. While Redis is down, the logs say so once, then summarise


async def test_redis_outage_is_logged_once_then_summarised(
    caplog: pytest.LogCaptureFixture, refused_port: int
) -> None:
    """Nothing listens at the Redis address: one line names it (never its password), then 60
    publishes add no line each; a summary within `log_interval` counts the dropped ones.

    Summaries come once per `log_interval` however long the publishes take (longer on a busy
    machine), so the lines counted against the publishes are the others."""
    from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane
    from observable_socket_asgi.pubsub.topics import Topics

    def ours(record: logging.LogRecord) -> bool:
        return (
            record.name.startswith("observable_socket_asgi")
            and "still down" not in record.getMessage()
        )

    url = f"redis://:hunter2@127.0.0.1:{refused_port}/0"
    transport = RedisBackplane(url, connect_timeout=50 * MS, log_interval=300 * MS)
    backplane = Topics(transport)
    with caplog.at_level(logging.DEBUG, logger="observable_socket_asgi"):
        await backplane.start()
        try:
            for n in range(60):
                await backplane.publish("t", n)
                await asyncio.sleep(MS)
            loud = [r for r in caplog.records if r.levelno >= logging.WARNING and ours(r)]
            assert 1 <= len(loud) <= 3, [r.getMessage() for r in loud]
            async with asyncio.timeout(TIMEOUT):
                while not any("still down" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(50 * MS)
                    await backplane.publish("t", "more")
        finally:
            await backplane.stop()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and ours(r)]
    assert f"127.0.0.1:{refused_port}" in lines[0]
    assert all("hunter2" not in r.getMessage() for r in caplog.records)
    summary = next(r.getMessage() for r in caplog.records if "still down" in r.getMessage())
    assert "publish" in summary and transport.dropped >= 60
    assert len(lines) < 10, lines


# The command line aligns uvicorn's message limit with the router's


def test_serve_sets_uvicorn_ws_max_size_from_the_router() -> None:
    """`observable-socket serve` makes uvicorn refuse (1009) what is over twice the router's
    limit, instead of reading up to its own 16 MiB default; between the two it is a 413."""
    import re

    from tests.helpers import PROCESS_TIMEOUT
    from tests.test_cli import lines_of, popen, stop

    async def scenario(port: int) -> None:
        url = f"ws://127.0.0.1:{port}/ws"
        async with connect(url, max_size=None) as ws:
            over = await ask(ws, request("echo", "x" * (MIB + MIB // 2), uuid="over"))
            assert (over["uuid"], over["status"]) == ("over", 413)
        async with connect(url, max_size=None) as ws:
            await ws.send(request("echo", "x" * (2 * MIB + 10), uuid="way-over"))
            assert (await close_of(ws))[0] == 1009

    with popen("serve", "tests.test_cli:router", "--port", "0") as proc:
        try:
            assert proc.stderr is not None
            lines = lines_of(proc.stderr)
            port = None
            while port is None:
                line = lines.get(timeout=PROCESS_TIMEOUT)
                found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
                if found:
                    port = int(found.group(1))
            asyncio.run(scenario(port))
        finally:
            assert stop(proc) == 0


def _readme_topic_limits_block() -> str:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "push.md").read_text()
    section = text[text.index("**Topic limits.**") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


async def test_readme_topic_limits_example_runs() -> None:
    """The topic-limits block of docs/push.md runs as written: a long room name and the 33rd room
    are answered 400 with the limit in the message."""
    from tests.helpers import conversation

    namespace: dict[str, Any] = {"__name__": "readme_topic_limits"}
    exec(compile(_readme_topic_limits_block(), "docs/push.md", "exec"), namespace)
    async with conversation(namespace["router"]) as conv:
        long_name = await conv.ask(request("room/join", {"room": "x" * 200}, uuid="long"))
        assert long_name["status"] == 400 and "128" in long_name["payload"]["message"]
        for n in range(32):
            assert (await conv.ask(request("room/join", {"room": n}, uuid=n)))["status"] == 200
        over = await conv.ask(request("room/join", {"room": "one more"}, uuid="over"))
        assert over["status"] == 400 and "32" in over["payload"]["message"]


async def test_observed_requests_follow_the_same_rules() -> None:
    """With metrics on (the observed request path), a foreign cancellation is still a 500 that
    frees its slot, and a malformed frame over the rate limit is still a 429."""
    from tests.helpers import conversation

    app = make_router(metrics_url="/metrics", rate_limit=(3, 60.0), max_in_flight=2)
    assert app.runtime.observer is not None
    async with conversation(app) as conv:
        for n in range(3):  # more than max_in_flight: each slot is freed again
            reply = await conv.ask(request("cancelled/later", uuid=f"c{n}"))
            assert (reply["uuid"], reply["status"]) == (f"c{n}", 500)
        broken = await conv.ask('{"uuid":"m","route":')
        assert (broken["uuid"], broken["status"]) == ("m", 429)
        assert len(app.connections) == 1  # still served
