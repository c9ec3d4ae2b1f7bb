"""The Python client against a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.client import (
    ConnectFailed,
    ConnectionClosed,
    Position,
    Push,
    RequestTimeout,
    connect,
)
from observable_socket_asgi.envelope import Response
from tests.helpers import (
    MS,
    TIMEOUT,
    Server,
    eventually,
    on_server,
    refusing_port,
    running,
    wait_until,
)

pytestmark = pytest.mark.e2e


def make_router(**options: Any) -> SocketRouter:
    router = SocketRouter(**options)

    @router.route("math/sum")
    async def total(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": {"sum": sum(payload)}}

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"headers": headers, "payload": payload}

    @router.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(payload)
        return {"payload": "done"}

    @router.route("subscribe")
    async def subscribe(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        for n in range(payload):
            await ws.push("ticks", {"n": n})
        return {"status": 201}

    return router


# The pure policy


# Request / response


async def test_request_response_and_header_merging() -> None:
    """A request gets its answer; global headers reach the server, per-call headers win."""
    with running(make_router()) as server:
        async with connect(server.url, headers={"token": "abc", "lang": "en"}) as sock:
            res = await sock.request("math/sum", [1, 2, 3, 4])
            assert res.ok and res.status == 200 and res.payload == {"sum": 10}
            assert isinstance(res.uuid, str) and len(res.uuid) == 36

            res = await sock.request("echo", 0, headers={"lang": "fr"})
            assert res.headers == {"token": "abc", "lang": "fr"}
            assert res.payload == 0
            assert sock.headers == {"token": "abc", "lang": "en"}

            res = await sock.request("nope")
            assert res.status == 404 and not res.ok
            assert res.payload == {"message": "route not found: nope"}


async def test_hundred_concurrent_requests_on_one_socket() -> None:
    """100 requests in flight at once each get their own answer, matched by uuid."""
    with running(make_router()) as server:
        async with connect(server.url) as sock:
            results = await asyncio.gather(*(sock.request("echo", n) for n in range(100)))
            assert [r.payload for r in results] == list(range(100))
            assert len({r.uuid for r in results}) == 100
            assert sock._protocol.in_flight == 0


async def test_send_is_fire_and_forget_and_its_answer_is_not_a_push() -> None:
    """send() returns without an answer; the answer the server still sends is dropped."""
    with running(make_router()) as server:
        async with connect(server.url) as sock:
            await sock.send("echo", {"x": 1})
            await sock.request("subscribe", 1)  # its push comes after send's answer
            push = await anext(aiter(sock.pushes()))
            assert push.route == "ticks" and push.payload == {"n": 0}


async def test_request_ping_returns_the_pong() -> None:
    """request("PING") is answered by the server's PONG, not timed out."""
    with running(make_router()) as server:
        async with connect(server.url, timeout=TIMEOUT, heartbeat_interval=None) as sock:
            res = await sock.request("PING")
            assert res.ok and res.payload is None and isinstance(res.uuid, str)
            assert sock._protocol.in_flight == 0
            # and a route after it still correlates
            assert (await sock.request("echo", 1)).payload == 1


async def test_send_to_a_failing_route_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """send()'s error answer (a 404) is logged with route, uuid and status; a 2xx is not."""
    caplog.set_level(logging.WARNING, "observable_socket_asgi.client")
    with running(make_router()) as server:
        async with connect(server.url) as sock:
            await sock.send("echo", 1)
            await sock.send("log/event", {"x": 1})
            await sock.request("echo", 2)  # answered after both sends' answers

            def warned() -> list[logging.LogRecord]:
                return [r for r in caplog.records if r.name == "observable_socket_asgi.client"]

            await wait_until(warned, what="the warning")
    [record] = warned()
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "send() to route 'log/event' was answered 404: {'message': 'route not found: log/event'}"
    )
    assert record.route == "log/event" and record.status == 404  # type: ignore[attr-defined]
    assert isinstance(record.uuid, str)  # type: ignore[attr-defined]


async def test_request_timeout_per_call_and_default() -> None:
    """A slow answer raises the client's timeout, an asyncio.TimeoutError; the socket lives on."""
    with running(make_router()) as server:
        async with connect(server.url, timeout=50 * MS) as sock:
            with pytest.raises(RequestTimeout) as info:
                await sock.request("slow", 10 * TIMEOUT)
            assert isinstance(info.value, asyncio.TimeoutError)
            assert info.value.route == "slow" and info.value.sent
            assert "within 0.05 s" in str(info.value)

            with pytest.raises(asyncio.TimeoutError):
                await sock.request("slow", 10.0, timeout=30 * MS)

            res = await sock.request("slow", 0, timeout=TIMEOUT)
            assert res.payload == "done"
            assert sock._protocol.in_flight == 0


# Heartbeat


async def test_heartbeat_keeps_a_quiet_socket_alive() -> None:
    """With a server that answers PONG, a request longer than several heartbeats succeeds."""
    with running(make_router()) as server:
        async with connect(
            server.url, heartbeat_interval=20 * MS, heartbeat_timeout=200 * MS
        ) as sock:
            res = await sock.request("slow", 0.15, timeout=TIMEOUT)
            assert res.payload == "done"
            assert sock.connected


async def test_heartbeat_without_pong_fails_pending_requests_at_once() -> None:
    """A server that stops answering PONG: the socket is declared dead, pending requests fail."""
    with running(make_router(heartbeat=False)) as server:
        async with connect(
            server.url,
            heartbeat_interval=20 * MS,
            heartbeat_timeout=60 * MS,
            reconnect=False,
            timeout=TIMEOUT,
        ) as sock:
            with pytest.raises(ConnectionClosed) as info:
                await sock.request("slow", 10 * TIMEOUT)
            assert "no PONG" in info.value.reason
            assert info.value.may_have_reached_server
            assert "may have reached the server" in str(info.value)
            await wait_until(lambda: sock.closed)
            with pytest.raises(ConnectionClosed) as after:
                await sock.request("math/sum", [1])
            assert not after.value.may_have_reached_server


# Closing, reconnecting


async def test_server_restart_fails_pending_fast_then_reconnects() -> None:
    """Server restart: pending requests fail with 1012 at once, nothing is resent, and the
    client reconnects to the new server on the same port, where the next request works.

    The port stays reserved from start to end by a bound socket that never listens: both
    servers listen on sockets of their own bound beside it (SO_REUSEADDR lets sockets share a
    port while at most one listens), so between the two servers a connection is refused, as
    in a real restart, and no other copy of the suite can take the port in the meantime.
    """
    router = make_router()
    reserved = socket.socket()
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]
    first = Server(router)
    first.sock.close()
    first.sock = listener_on(port)
    first.port, first.url = port, f"ws://127.0.0.1:{port}"
    first.start()
    try:
        async with connect(
            first.url,
            timeout=TIMEOUT,
            backoff_initial=10 * MS,
            backoff_max=50 * MS,
            max_attempts=None,
        ) as sock:
            assert (await sock.request("math/sum", [1, 2])).payload == {"sum": 3}
            pending = [asyncio.ensure_future(sock.request("slow", 10 * TIMEOUT)) for _ in range(3)]
            await wait_until(lambda: sock._protocol.in_flight == 3)

            stopping = asyncio.ensure_future(asyncio.to_thread(first.stop))
            results = await asyncio.gather(*pending, return_exceptions=True)
            for error in results:
                assert isinstance(error, ConnectionClosed), error
                assert error.code == 1012
                assert error.may_have_reached_server
            await stopping
            assert not sock.closed

            second = Server(router)
            second.sock.close()
            second.sock = listener_on(port)
            await asyncio.to_thread(second.start)
            try:
                res = await sock.request("math/sum", [4, 5])
                assert res.payload == {"sum": 9}
                assert sock.connected
            finally:
                await sock.close()
                await asyncio.to_thread(second.stop)
    finally:
        if first.thread.is_alive():
            await asyncio.to_thread(first.stop)
        # closed here, not left to the garbage collector: its ResourceWarning would fail
        # whichever later test runs when the collector gets to it
        reserved.close()
        reserved.close()


def listener_on(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:`port`, bound beside the test's reserving socket."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


async def test_on_open_runs_on_every_connection_and_renews_a_subscription() -> None:
    """on_open runs after the first handshake and each reconnection, and may make requests."""
    router = make_router()

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await ws.subscribe("news")
        return {}

    @router.route("leave")
    async def leave(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await ws.close(1001, "going away")
        return {}

    answers: list[int] = []

    async def on_open(sock: Any) -> None:
        answers.append((await sock.request("join")).status)

    with running(router) as server:
        async with connect(
            server.url, on_open=on_open, timeout=TIMEOUT, backoff_initial=10 * MS
        ) as sock:
            await wait_until(lambda: answers == [200], what="the first on_open")
            await eventually(server, lambda: router.backplane.subscribers("news"), 1)
            await sock.send("leave")  # the server closes with 1001: the client reconnects
            await wait_until(lambda: answers == [200, 200], what="on_open after reconnecting")
            await eventually(server, lambda: router.backplane.subscribers("news"), 1)
            await on_server(server, lambda: asyncio.ensure_future(router.publish("news", 7)))
            push = await anext(aiter(sock.pushes()))
            assert (push.route, push.payload) == ("news", 7)


async def test_failing_on_open_is_logged_and_the_client_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An on_open that raises is logged with its traceback; the connection stays usable."""

    def on_open(sock: Any) -> None:
        raise ValueError("boom")

    with running(make_router()) as server:
        async with connect(server.url, on_open=on_open) as sock:
            assert (await sock.request("echo", 1)).payload == 1
    [record] = [r for r in caplog.records if r.getMessage().startswith("on_open callback failed")]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_close_1008_is_never_retried() -> None:
    """Refused by access_logic (1008): requests fail and the client does not reconnect."""
    attempts = []

    def refuse(ws: Any) -> bool:
        attempts.append(ws)
        return False

    with running(make_router(access_logic=refuse)) as server:
        async with connect(server.url, backoff_initial=1 * MS, timeout=TIMEOUT) as sock:
            await wait_until(lambda: sock.closed)
            assert sock.close_code == 1008
            with pytest.raises(ConnectionClosed) as info:
                await sock.request("math/sum", [1])
            assert info.value.code == 1008
            assert not info.value.may_have_reached_server
            assert len(attempts) == 1


async def test_connect_refused_raises_connect_failed() -> None:
    """Nobody listening: entering the block raises ConnectFailed with a clear message."""
    with refusing_port() as port, pytest.raises(ConnectFailed, match="connection refused"):
        async with connect(f"ws://127.0.0.1:{port}"):
            pass


async def test_wrong_path_says_check_the_path() -> None:
    """A router served at /sockets by Starlette: connecting at another path fails with the
    403 and a hint to check the path, naming it; the right path connects."""
    app = Starlette(routes=[WebSocketRoute("/sockets", make_router())])
    with running(app) as server:
        async with connect(f"{server.url}/sockets", timeout=TIMEOUT) as sock:
            assert (await sock.request("math/sum", [1, 2])).payload == {"sum": 3}
        with pytest.raises(ConnectFailed) as info:
            async with connect(f"{server.url}/socket"):
                pass
    assert info.value.status == 403
    assert "check the path" in str(info.value)
    assert "no WebSocket route at /socket?" in str(info.value)


async def test_close_is_idempotent_and_fails_pending() -> None:
    """close() from several tasks at once ends everything; later requests fail unsent."""
    with running(make_router()) as server:
        sock = await connect(server.url, timeout=TIMEOUT).connect()
        waiting = asyncio.ensure_future(sock.request("slow", 10 * TIMEOUT))
        await wait_until(lambda: sock._protocol.in_flight == 1)
        await asyncio.gather(sock.close(), sock.close())
        await sock.close()
        error = (await asyncio.gather(waiting, return_exceptions=True))[0]
        assert isinstance(error, ConnectionClosed) and error.may_have_reached_server
        assert sock.closed and not sock.connected
        with pytest.raises(ConnectionClosed) as info:
            await sock.send("echo", 1)
        assert not info.value.may_have_reached_server


# Pushes


async def test_pushes_iterator_and_end_on_close() -> None:
    """Pushes arrive in order through pushes(); the iterator ends when the client closes."""
    with running(make_router()) as server:
        async with connect(server.url) as sock:
            res = await sock.request("subscribe", 3)
            assert res.status == 201
            seen: list[Push] = []
            async for push in sock.pushes():
                seen.append(push)
                if len(seen) == 3:
                    break
            assert [p.payload for p in seen] == [{"n": 0}, {"n": 1}, {"n": 2}]
            assert all(p.route == "ticks" and p.ok and isinstance(p.uuid, str) for p in seen)

            async def drain() -> int:
                return len([p async for p in sock.pushes()])

            reader = asyncio.ensure_future(drain())
            await asyncio.sleep(0)
            await sock.close()
            assert await asyncio.wait_for(reader, TIMEOUT) == 0


async def test_push_buffer_drops_oldest_when_full() -> None:
    """A full buffer keeps the newest pushes and counts the dropped ones."""
    with running(make_router()) as server:
        async with connect(server.url, max_pushes=2) as sock:
            await sock.request("subscribe", 5)
            assert sock.dropped_pushes == 3
            assert [p.payload["n"] for p in sock._pushes] == [3, 4]

        async with connect(server.url, max_pushes=2, overflow="drop_newest") as sock:
            await sock.request("subscribe", 5)
            assert sock.dropped_pushes == 3
            assert [p.payload["n"] for p in sock._pushes] == [0, 1]


async def test_push_callbacks_sync_and_async() -> None:
    """on_push receives every push, sync or async; pushes() is then unavailable."""
    got: list[Any] = []
    with running(make_router()) as server:
        async with connect(server.url, on_push=got.append) as sock:
            await sock.request("subscribe", 2)
            assert [p.payload for p in got] == [{"n": 0}, {"n": 1}]
            with pytest.raises(RuntimeError, match="on_push"):
                await anext(aiter(sock.pushes()))

        done = asyncio.Event()
        seen: list[Push] = []

        async def collect(push: Push) -> None:
            seen.append(push)
            if len(seen) == 2:
                done.set()

        async with connect(server.url, on_push=collect) as sock:
            await sock.request("subscribe", 2)
            await asyncio.wait_for(done.wait(), TIMEOUT)
            assert [p.payload for p in seen] == [{"n": 0}, {"n": 1}]


async def test_late_answer_to_a_timed_out_request_is_not_a_push() -> None:
    """The answer that arrives after its request timed out is dropped, not buffered as a push."""
    with running(make_router()) as server:
        async with connect(server.url) as sock:
            with pytest.raises(RequestTimeout):
                await sock.request("slow", 0.05, timeout=5 * MS)
            # started later and sleeping longer, so its answer comes after the late one
            assert (await sock.request("slow", 0.2, timeout=TIMEOUT)).payload == "done"
            assert list(sock._pushes) == []
            assert sock.dropped_pushes == 0


async def test_server_over_its_limit_refuses_with_retry_after() -> None:
    """Over max_connections the server refuses the handshake (503): `ConnectFailed` carries
    the status and the Retry-After the reconnect loop will wait at least."""
    with running(make_router(max_connections=1, retry_after=2)) as server:
        async with connect(server.url, timeout=TIMEOUT) as holder:
            assert (await holder.request("math/sum", [1])).payload == {"sum": 1}
            with pytest.raises(ConnectFailed) as info:
                async with connect(server.url):
                    pass
            assert info.value.status == 503
            assert info.value.retry_after is not None and 2 <= info.value.retry_after <= 4


# Resuming topics across reconnects


def resumable_router() -> SocketRouter:
    """Rooms with history; `kick` makes the client miss three pushes, then closes 1012."""
    router = SocketRouter(history_size=100)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        got = await ws.subscribe(payload["topic"], since=payload["since"])
        return {"payload": {"recovered": got.recovered, "offset": got.offset, "epoch": got.epoch}}

    @router.route("say")
    async def say(ws: Any, headers: Any, payload: Any) -> Any:
        await router.publish("t", payload)
        return {}

    @router.route("kick")
    async def kick(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.unsubscribe("t")
        for n in range(3):
            await router.publish("t", f"missed {n}")
        await ws.close(1012, "restart")
        return {}

    return router


async def test_subscribe_resumes_from_the_last_position_after_a_reconnect() -> None:
    """The client re-runs its subscribe call with `since` and receives what it missed."""
    answers: list[Response] = []
    answered = asyncio.Event()

    def on_answer(answer: Response) -> None:
        answers.append(answer)
        answered.set()

    with running(resumable_router()) as server:
        async with connect(server.url, backoff_initial=0.01) as client:
            first = await client.subscribe("join", {"topic": "t"}, topic="t", on_answer=on_answer)
            assert first.payload["recovered"] is False
            await client.request("say", "one")
            pushes = client.pushes()
            assert (await anext(pushes)).payload == "one"
            position = client.position("t")
            assert position is not None and position.offset == 1

            with contextlib.suppress(ConnectionClosed):
                await client.request("kick")
            missed = [(await anext(pushes)).payload for _ in range(3)]
            assert missed == ["missed 0", "missed 1", "missed 2"]
            await asyncio.wait_for(answered.wait(), TIMEOUT)
            assert answers[0].payload == {
                "recovered": True,
                "offset": 4,
                "epoch": position.epoch,
            }
            assert client.position("t") == Position(4, position.epoch)
            await client.request("say", "live")
            assert (await anext(pushes)).payload == "live"


async def test_request_with_an_explicit_uuid() -> None:
    """A caller-chosen uuid is sent as is (for idempotent retries); a pending one is refused."""
    with running(make_router()) as server:
        async with connect(server.url) as client:
            answer = await client.request("echo", 1, uuid="my-uuid-1")
            assert answer.uuid == "my-uuid-1"
