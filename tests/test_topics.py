"""Topics with the in-memory backplane: fan-out, unsubscribe, cleanup, slow consumers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

import observable_socket_asgi.pubsub.topics as topics_module
from observable_socket_asgi import ConnectionClosed, SocketRouter, Status, envelope
from observable_socket_asgi.pubsub.topics import Backplane, InMemoryBackplane
from observable_socket_asgi.server.routing import make_backplane
from tests.helpers import (
    TIMEOUT,
    Communicator,
    Conversation,
    Server,
    request,
    running,
    wait_until,
)


def chat_router(**options: Any) -> SocketRouter:
    """A router whose clients join and leave topics and publish to them."""
    router = SocketRouter(**options)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe(payload)
        return {"status": Status.OK}

    @router.route("leave")
    async def leave(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.unsubscribe(payload)
        return {"status": Status.OK}

    @router.route("say")
    async def say(ws: Any, headers: Any, payload: Any) -> Any:
        await router.publish(payload["topic"], payload["text"], payload.get("headers"))
        return {"status": Status.ACCEPTED}

    return router


# Construction


def test_make_backplane_defaults_to_memory() -> None:
    """No backplane (or "memory") means the in-process one."""
    assert isinstance(make_backplane(None), InMemoryBackplane)
    assert isinstance(make_backplane("memory"), InMemoryBackplane)
    assert isinstance(SocketRouter().backplane, InMemoryBackplane)
    assert SocketRouter().backplane.connected is True


def test_make_backplane_rejects_unknown_urls() -> None:
    """A backplane URL of an unknown scheme fails at construction, naming what was given."""
    with pytest.raises(ValueError, match="kafka://x"):
        SocketRouter(backplane="kafka://x")
    with pytest.raises(TypeError):
        make_backplane(42)  # type: ignore[arg-type]


def test_make_backplane_keeps_an_instance() -> None:
    """A Backplane instance is used as given."""
    backplane = InMemoryBackplane()
    assert SocketRouter(backplane=backplane).backplane is backplane


# In-process conversations


async def test_fan_out_reaches_every_subscriber_with_one_encoded_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One publish encodes once and reaches all 50 subscribers with the same frame."""
    router = chat_router()
    calls = 0
    real = envelope.encode_push  # what topics.py imported

    def counting(*args: Any, **kwargs: Any) -> str:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(topics_module, "encode_push", counting)
    convs = [Conversation(router) for _ in range(50)]
    for conv in convs:
        assert (await conv.connect())["type"] == "websocket.accept"
        assert (await conv.ask(request("join", "news", uuid=7)))["status"] == 200
    other = Conversation(router)
    await other.connect()
    assert router.backplane.subscribers("news") == 50

    await router.publish("news", {"n": 1}, {"h": "v"})
    assert calls == 1
    frames = [(await conv.output())["text"] for conv in convs]
    assert len(set(frames)) == 1  # the very same frame: same server uuid
    push = orjson.loads(frames[0])
    assert push["route"] == "news"
    assert push["status"] == 200
    assert push["headers"] == {"h": "v"}
    assert push["payload"] == {"n": 1}
    assert push["uuid"] not in (7, "7") and isinstance(push["uuid"], str)
    assert await other.nothing()
    for conv in [*convs, other]:
        await conv.disconnect()


async def test_pushes_keep_publish_order() -> None:
    """Pushes from one publisher arrive in the order they were published."""
    router = chat_router()
    conv = Conversation(router)
    await conv.connect()
    await conv.ask(request("join", "t"))
    for n in range(100):
        await router.publish("t", n)
    assert [(await conv.reply())["payload"] for _ in range(100)] == list(range(100))
    await conv.disconnect()


async def test_send_frame_nowait_writes_at_once_and_skips_a_closed_connection() -> None:
    """An encoded push handed to `send_frame_nowait` is written before it returns (no task:
    the writer was idle); on a closed connection it is skipped without an error."""
    router = SocketRouter()
    outcome: list[Any] = []

    @router.route("poke")
    async def poke(ws: Any, headers: Any, payload: Any) -> Any:
        outcome.append(ws.send_frame_nowait(envelope.encode_push("note", payload)))
        return {"payload": "poked"}

    conv = Conversation(router)
    await conv.connect()
    await conv.send(request("poke", 5))
    push, reply = await conv.reply(), await conv.reply()
    assert (push["route"], push["payload"], reply["payload"]) == ("note", 5, "poked")
    assert outcome == [None]
    conn = next(iter(router.connections))
    await conv.disconnect()
    await wait_until(lambda: conn.closed)
    assert conn.send_frame_nowait(envelope.encode_push("note", 6)) is None


async def test_a_subscriber_whose_send_waits_gets_its_pushes_in_order_later() -> None:
    """A push write that has to wait (a full socket) finishes in a task of its own; pushes
    published meanwhile queue behind it, in order, and the other subscribers get theirs at
    once."""
    from observable_socket_asgi.testing import websocket_scope

    router = chat_router()
    fast = Conversation(router)
    await fast.connect()
    await fast.ask(request("join", "t"))
    gate, leave, joined = asyncio.Event(), asyncio.Event(), asyncio.Event()
    received: list[Any] = []
    feed = iter([{"type": "websocket.connect"}, {"type": "websocket.receive", "text": ""}])

    async def receive() -> dict[str, Any]:
        message = next(feed, None)
        if message is None:
            await leave.wait()
            return {"type": "websocket.disconnect", "code": 1000}
        if message["type"] == "websocket.receive":
            message["text"] = request("join", "t", uuid="j")
        return message

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "websocket.send":
            return
        frame = orjson.loads(message["text"])
        if frame.get("route") != "t":
            joined.set()
            return
        await gate.wait()  # the socket is full until the gate opens
        received.append(frame["payload"])

    app: Any = router  # driven with plain dicts, as a server would
    slow = asyncio.create_task(app(websocket_scope(), receive, send))
    await asyncio.wait_for(joined.wait(), TIMEOUT)
    for n in range(3):
        await router.publish("t", n)
    assert [(await fast.reply())["payload"] for _ in range(3)] == [0, 1, 2]
    assert received == []
    gate.set()
    await wait_until(lambda: len(received) == 3, what="the queued pushes")
    assert received == [0, 1, 2]
    leave.set()
    await asyncio.wait_for(slow, TIMEOUT)
    await fast.disconnect()


async def test_unsubscribe_stops_pushes() -> None:
    """After leaving a topic a connection receives nothing more from it."""
    router = chat_router()
    conv = Conversation(router)
    await conv.connect()
    await conv.ask(request("join", "a"))
    await conv.ask(request("join", "b"))
    assert (await conv.ask(request("leave", "a")))["status"] == 200
    await conv.ask(request("leave", "never-joined"))
    await router.publish("a", "from a")
    await router.publish("b", "from b")
    assert (await conv.reply())["payload"] == "from b"
    assert await conv.nothing()
    assert router.backplane.topics == frozenset({"b"})
    await conv.disconnect()


async def test_subscribe_twice_delivers_once() -> None:
    """Subscribing to a topic already held is a no-op: one push per publish."""
    router = chat_router()
    conv = Conversation(router)
    await conv.connect()
    await conv.ask(request("join", "a"))
    await conv.ask(request("join", "a"))
    await router.publish("a", 1)
    assert (await conv.reply())["payload"] == 1
    assert await conv.nothing()
    await conv.disconnect()


async def test_disconnect_drops_every_subscription() -> None:
    """A closed connection is removed from every topic; topics with nobody left go away."""
    router = chat_router()
    stay, leave = Conversation(router), Conversation(router)
    for conv in (stay, leave):
        await conv.connect()
    await stay.ask(request("join", "shared"))
    for topic in ("shared", "x", "y"):
        await leave.ask(request("join", topic))
    assert router.backplane.topics == frozenset({"shared", "x", "y"})
    await leave.disconnect()
    assert router.backplane.topics == frozenset({"shared"})
    assert router.backplane.subscribers("shared") == 1
    assert router.backplane._topics_of.keys() == {next(iter(router.connections))}
    assert await router.backplane.publish("shared", "still here") == 1
    assert (await stay.reply())["payload"] == "still here"
    await stay.disconnect()
    assert router.backplane.topics == frozenset()
    assert not router.backplane._topics_of


async def test_publish_from_a_handler_reaches_the_publisher_too() -> None:
    """A handler's publish is a push to every subscriber, the caller included."""
    router = chat_router()
    conv = Conversation(router)
    await conv.connect()
    await conv.ask(request("join", "room"))
    await conv.send(request("say", {"topic": "room", "text": "hi"}, uuid=9))
    frames = [await conv.reply(), await conv.reply()]
    by_kind = {("push" if "route" in f else "reply"): f for f in frames}
    assert by_kind["reply"] == {"uuid": 9, "status": 202, "headers": {}, "payload": None}
    assert by_kind["push"]["route"] == "room" and by_kind["push"]["payload"] == "hi"
    await conv.disconnect()


async def test_subscribe_on_a_closed_connection_is_refused() -> None:
    """A connection that is closing cannot subscribe (nothing would clean it up)."""
    router = SocketRouter()
    seen: list[Any] = []

    @router.route("close-then-join")
    async def handler(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.close()
        try:
            await ws.subscribe("t")
        except ConnectionClosed as exc:
            seen.append(exc)
        return {}

    conv = Conversation(router)
    await conv.connect()
    await conv.send(request("close-then-join"))
    assert (await conv.output())["type"] == "websocket.close"
    await wait_until(lambda: seen)
    assert router.backplane.topics == frozenset()
    await conv.disconnect()


async def test_topic_must_be_a_string() -> None:
    """A non-string topic is a programming error, answered 500 like any handler fault."""
    router = chat_router()
    conv = Conversation(router)
    await conv.connect()
    assert (await conv.ask(request("join", 5)))["status"] == 500
    await conv.disconnect()


async def test_lifespan_starts_and_stops_the_backplane() -> None:
    """The router's lifespan starts the backplane before user startup hooks run."""
    events: list[str] = []

    class Recording(Backplane):
        async def _start(self) -> None:
            events.append("backplane start")

        async def _stop(self) -> None:
            events.append("backplane stop")

    router = SocketRouter(backplane=Recording(), on_startup=[lambda: events.append("user")])

    comm = Communicator(router, {"type": "lifespan"})
    await comm.send_input({"type": "lifespan.startup"})
    assert (await comm.receive_output(TIMEOUT))["type"] == "lifespan.startup.complete"
    await comm.send_input({"type": "lifespan.shutdown"})
    assert (await comm.receive_output(TIMEOUT))["type"] == "lifespan.shutdown.complete"
    assert events == ["backplane start", "user", "backplane stop"]


async def test_backplane_starts_lazily_without_lifespan() -> None:
    """Mounted without lifespan, the backplane starts on first subscribe or publish."""
    started: list[bool] = []

    class Recording(Backplane):
        async def _start(self) -> None:
            started.append(True)

    router = SocketRouter(backplane=Recording())
    await router.publish("nobody", 1)
    await router.publish("nobody", 2)
    assert started == [True]


# Real uvicorn: slow consumers


def _closed_flags(server: Server, router: SocketRouter) -> list[bool]:
    return sorted(server.call(lambda: [conn.closed for conn in router.connections]))


def _open_count(server: Server, router: SocketRouter) -> int:
    return _closed_flags(server, router).count(False)


async def _publish_on(server: Server, router: SocketRouter, *args: Any) -> None:
    assert server.loop is not None
    future = asyncio.run_coroutine_threadsafe(router.publish(*args), server.loop)
    await asyncio.wrap_future(future)


async def test_slow_consumer_is_closed_1013_while_others_keep_receiving(serve: Any) -> None:
    """A client that stops reading is closed with 1013; a reading one misses nothing."""
    router = chat_router(max_queued_pushes=4)
    server = serve(router)
    big = "x" * 256 * 1024
    async with (
        connect(server.url, max_queue=1, compression=None) as slow,
        connect(server.url, compression=None) as fast,
    ):
        for ws in (slow, fast):
            await ws.send(request("join", "feed"))
            assert orjson.loads(await ws.recv())["status"] == 200
        received: list[Any] = []

        async def read_fast() -> None:
            async for frame in fast:
                received.append(orjson.loads(frame)["payload"])

        def received_all(count: int) -> Callable[[], bool]:
            return lambda: len(received) == count

        reader = asyncio.create_task(read_fast())
        published = 0
        # The slow client reads nothing from here on. Socket buffers hold a few MB, so
        # this ends after some tens of pushes; the bound only stops a broken policy.
        while _open_count(server, router) != 1:
            assert published < 400, "the slow consumer was never closed"
            await _publish_on(server, router, "feed", [published, big])
            published += 1
            await wait_until(received_all(published))
        assert [p[0] for p in received] == list(range(published))

        # The slow client reads again: the pushes that left before the close, then 1013.
        with pytest.raises(websockets.ConnectionClosed) as info:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await slow.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013

        await _publish_on(server, router, "feed", ["after", ""])
        await wait_until(lambda: len(received) == published + 1)
        assert server.call(lambda: router.backplane.subscribers("feed")) == 1
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def test_drop_oldest_keeps_a_slow_consumer_open() -> None:
    """With drop_oldest a slow client loses old pushes but stays connected and gets the last."""
    router = chat_router(max_queued_pushes=4, slow_consumer="drop_oldest")
    big = "x" * 256 * 1024
    with running(router) as server:
        await _drop_oldest(server, router, big)


async def _drop_oldest(server: Server, router: SocketRouter, big: str) -> None:
    async with connect(server.url, max_queue=1, compression=None) as slow:
        await slow.send(request("join", "feed"))
        assert orjson.loads(await slow.recv())["status"] == 200
        count = 200
        for n in range(count):
            await _publish_on(server, router, "feed", [n, big])
        await _publish_on(server, router, "feed", ["last", ""])
        seen: list[Any] = []
        async with asyncio.timeout(TIMEOUT):
            while not seen or seen[-1] != "last":
                seen.append(orjson.loads(await slow.recv())["payload"][0])
        assert len(seen) < count + 1  # some were dropped
        numbers = seen[:-1]
        assert numbers == sorted(numbers)  # what remains keeps its order
        assert _closed_flags(server, router) == [False]


async def test_included_router_publishes_to_the_including_routers_subscribers() -> None:
    """A handler of an included router publishing through its own router reaches clients
    subscribed through the router that serves it."""
    main = SocketRouter()
    sub = SocketRouter()

    @main.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe("news")
        return {}

    @sub.route("say")
    async def say(ws: Any, headers: Any, payload: Any) -> Any:
        await sub.publish("news", payload)
        return {"status": Status.ACCEPTED}

    main.include_router(sub, prefix="chat/")
    conv = Conversation(main)
    assert (await conv.connect())["type"] == "websocket.accept"
    assert (await conv.ask(request("join", uuid=1)))["status"] == 200
    await conv.send(request("chat/say", "hello", uuid=2))
    frames = [await conv.reply(), await conv.reply()]
    push = next(f for f in frames if f.get("route") == "news")
    assert push["payload"] == "hello"
    assert any(f.get("uuid") == 2 and f["status"] == 202 for f in frames)
    await conv.disconnect()


# A publish to many subscribers shares the event loop


class _Sink:
    """A stand-in connection for the fan-out: records what it is handed, never suspends."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closers: list[Any] = []
        self.closed = False
        self.client = None

    async def send_frame(self, frame: str) -> None:
        self.frames.append(frame)

    def on_close(self, callback: Any) -> None:
        self.closers.append(callback)

    def push_nowait(self, message: dict[str, Any]) -> None:
        """What a publish calls (Connection's): the frame is taken at once."""
        self.frames.append(message["text"])


async def test_a_large_fan_out_yields_to_the_loop_and_keeps_order() -> None:
    """A publish to 2,000 subscribers is handed out in slices: other callbacks run before
    the last subscriber has it, and every subscriber still gets the pushes in publish order."""
    backplane = InMemoryBackplane()
    sinks = [_Sink() for _ in range(2000)]
    for sink in sinks:
        await backplane.subscribe(sink, "wave")  # type: ignore[arg-type]
    seen_when_the_loop_ran: list[int] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: seen_when_the_loop_ran.append(len(sinks[-1].frames)))
    for n in range(3):
        await backplane.publish("wave", n)
    await asyncio.sleep(0)
    # the loop ran while the publishes were still going out
    assert seen_when_the_loop_ran == [0]
    await wait_until(lambda: all(len(sink.frames) == 3 for sink in sinks))
    for sink in (sinks[0], sinks[999], sinks[-1]):
        assert [orjson.loads(f)["payload"] for f in sink.frames] == [0, 1, 2]
    await backplane.stop()


async def test_a_small_fan_out_is_handed_out_at_once() -> None:
    """Few subscribers and small frames: every subscriber has the push when publish returns."""
    backplane = InMemoryBackplane()
    sinks = [_Sink() for _ in range(10)]
    for sink in sinks:
        await backplane.subscribe(sink, "t")  # type: ignore[arg-type]
    await backplane.publish("t", "now")
    assert all(len(sink.frames) == 1 for sink in sinks)


async def test_subscription_limits_refuse_with_a_clear_error() -> None:
    """Past max_topics, or a topic name over max_topic_bytes: SubscriptionLimitError (a
    ValueError with status 400) naming the limit; what fits stays subscribed."""
    from observable_socket_asgi import SubscriptionLimitError
    from tests.helpers import conversation

    router = SocketRouter(max_topics=2, max_topic_bytes=8)
    refusals: list[tuple[str, int]] = []

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        try:
            await ws.subscribe(payload)
        except SubscriptionLimitError as exc:
            refusals.append((exc.limit, exc.status))
            return {"status": exc.status, "payload": {"message": str(exc)}}
        return {}

    async with conversation(router) as conv:
        assert (await conv.ask(request("join", "éééé")))["status"] == 200  # 8 bytes
        assert (await conv.ask(request("join", "ééééé")))["status"] == 400  # 10 bytes
        assert (await conv.ask(request("join", "b")))["status"] == 200
        assert (await conv.ask(request("join", "b")))["status"] == 200  # already held
        assert (await conv.ask(request("join", "c")))["status"] == 400
    assert refusals == [("max_topic_bytes", 400), ("max_topics", 400)]
    assert isinstance(SubscriptionLimitError("x", "max_topics"), ValueError)
