"""The contenders: one ASGI app per name, all answering the same three routes.

Every contender serves the same wire contract so the load generator cannot tell them apart:
`echo` answers the request's payload, `slow` does the same after awaiting 50 ms, `hooks`
runs data_check + access + hydrate + dehydrate around the echo, `typed` is the echo with a
declared payload and response type (`list[int]`, validated and serialised by pydantic; the
routers of this project only), and `push` starts pushing frames at the client (the
slow-consumer scenario). The bare apps ignore `route` except
where a scenario needs it; they are the ceilings, not routers.

`starlette` is what a FastAPI user writes by hand instead of a router: a Starlette
`WebSocketRoute` whose endpoint awaits `receive_text()`, decodes with orjson, answers
(PONG for `PING`, after 50 ms for `slow`) and awaits `send_text()`, one request at a time.
The router's target is at least 1.0 x its rate (`bench/versus.py`).

Fan-out (`bench/fanout.py`) adds two routes to `bare`, `router` and `socketio`: `subscribe`
puts the connection on the topic `fan`, and `fanout` (payload `{"count": n}`) pushes `n`
frames of about 100 B to every subscriber, then answers. `socketio` speaks Socket.IO, not
the envelope: each route is an event and the request's uuid travels as the ack id, so the
same envelope comes back in the ack (`bench/loadgen.py` speaks both).

`channels` (Django Channels, an AsyncWebsocketConsumer answering the envelope inline) takes
part in the idle-connections scenario only (`bench/idle_scale.py`).

`build(name)` returns the app; `CONTENDERS` lists the names in report order. An app that
cannot be built (the FastAPI adapter before it exists) raises `Unavailable`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: report order; `bare` is the baseline every figure is divided by
CONTENDERS = (
    "bare",
    "starlette",
    "bare_task",
    "fastapi",
    "original",
    "router",
    "adapter",
    "socketio",
)

LABELS = {
    "bare": "bare ASGI echo (inline)",
    "starlette": "Starlette WebSocketRoute, hand-written receive_text/orjson/send_text loop",
    "bare_task": "bare ASGI echo (task per request)",
    "fastapi": "FastAPI @app.websocket receive_json/send_json",
    "original": "fastapi-observable-socket 1.1.1",
    "router": "observable-socket-asgi (standalone)",
    "adapter": "observable-socket-asgi via fastapi_adapter",
    "router_drop": "observable-socket-asgi, slow_consumer='drop_oldest'",
    "router_redis": "observable-socket-asgi with the Redis backplane (pushes from another worker)",
    "router_access": "observable-socket-asgi with an async access_logic checking a query token",
    "socketio": "python-socketio AsyncServer (ASGI), events with ack, emit(room=...)",
    "channels": "Django Channels AsyncWebsocketConsumer (no channel layer), idle scenarios only",
    "router_metrics": "observable-socket-asgi, metrics_url='/metrics'",
    "router_tracing": "observable-socket-asgi, tracing (SDK, batch processor, no export)",
}

#: the URL path each contender serves its socket on (default: /ws)
PATHS = {"socketio": "/socket.io/?EIO=4&transport=websocket"}

#: the fan-out topic (a Socket.IO room for `socketio`) and the payload of each push: with
#: the envelope around it a push frame is about 100 bytes
TOPIC = "fan"
FAN_PAYLOAD = "p" * 32
ACCESS_TOKEN = "abc"

SLOW_SECONDS = 0.05
#: push frames per batch, and the pause between batches, of the slow-consumer pusher
PUSH_BATCH = 64
PUSH_PAUSE = 0.001
PUSH_PAYLOAD = "x" * 1024


class Unavailable(Exception):
    """The contender cannot be built in this environment; the report says why."""


def build(name: str) -> ASGIApp:
    """Return the ASGI app of contender `name`."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown contender {name!r}; expected one of {CONTENDERS}")
    return factory()


def _reply(request: dict[str, Any]) -> str:
    return orjson.dumps(
        {
            "uuid": request.get("uuid"),
            "status": 200,
            "headers": {},
            "payload": request.get("payload"),
        }
    ).decode()


def _push_envelope(seq: int) -> dict[str, Any]:
    """The push every fan-out contender sends: the router's push shape, sequence in headers."""
    return {
        "uuid": f"s-{seq}",
        "route": TOPIC,
        "status": 200,
        "headers": {"seq": seq},
        "payload": FAN_PAYLOAD,
    }


# Bare ASGI baselines


async def _accept(receive: Receive, send: Send) -> bool:
    message = await receive()
    if message["type"] != "websocket.connect":
        return False
    await send({"type": "websocket.accept"})
    return True


async def _naive_pusher(send: Send) -> None:
    """Push without any bound: a task per frame, the way a naive broadcaster does it."""
    frame = orjson.dumps(
        {"uuid": None, "route": "tick", "status": 200, "headers": {}, "payload": PUSH_PAYLOAD}
    ).decode()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def one() -> None:
        try:
            await send({"type": "websocket.send", "text": frame})
        except Exception:  # the peer left
            pass

    while True:
        for _ in range(PUSH_BATCH):
            task = loop.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(PUSH_PAUSE)


def _bare_factory() -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        """Answer each frame inline: no routing, no concurrency (the ceiling)."""
        if scope["type"] != "websocket" or not await _accept(receive, send):
            return
        loads, dumps = orjson.loads, orjson.dumps
        pusher: asyncio.Task[None] | None = None
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                request = loads(message.get("text") or message.get("bytes") or b"")
                route = request.get("route")
                if route == "slow":
                    await asyncio.sleep(SLOW_SECONDS)
                elif route == "push" and pusher is None:
                    pusher = asyncio.get_running_loop().create_task(_naive_pusher(send))
                elif route == "subscribe":
                    subscribers[send] = None
                elif route == "fanout":
                    await _bare_fanout(subscribers, int(request["payload"]["count"]))
                reply = {
                    "uuid": request.get("uuid"),
                    "status": 200,
                    "headers": {},
                    "payload": request.get("payload"),
                }
                await send({"type": "websocket.send", "text": dumps(reply).decode()})
        finally:
            subscribers.pop(send, None)
            if pusher is not None:
                pusher.cancel()

    subscribers: dict[Send, None] = {}
    return app


async def _bare_fanout(subscribers: dict[Send, None], count: int) -> None:
    """The least a server can do: encode each push once, await every subscriber's send."""
    dumps = orjson.dumps
    for seq in range(count):
        message = {"type": "websocket.send", "text": dumps(_push_envelope(seq)).decode()}
        for send in list(subscribers):
            try:
                await send(message)
            except Exception:  # the peer left
                subscribers.pop(send, None)


def _bare_task_factory() -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        """One task per request: the ceiling for a router that serves requests concurrently."""
        if scope["type"] != "websocket" or not await _accept(receive, send):
            return
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        async def serve(request: dict[str, Any]) -> None:
            if request.get("route") == "slow":
                await asyncio.sleep(SLOW_SECONDS)
            try:
                await send({"type": "websocket.send", "text": _reply(request)})
            except Exception:  # the peer left
                pass

        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                request = orjson.loads(message.get("text") or message.get("bytes") or b"")
                if request.get("route") == "push":
                    tasks.add(loop.create_task(_naive_pusher(send)))
                task = loop.create_task(serve(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    return app


# Starlette, by hand


def _starlette_factory() -> ASGIApp:
    """The endpoint a FastAPI user writes by hand, on plain Starlette: one request at a time,
    orjson both ways, PONG for PING (the bar the router must clear at 1.0 x)."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    loads, dumps = orjson.loads, orjson.dumps

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                text = await ws.receive_text()
                request = loads(text)
                route = request.get("route")
                if route == "PING":
                    reply = {
                        "uuid": request["uuid"],
                        "route": "PONG",
                        "status": 200,
                        "headers": {},
                        "payload": None,
                    }
                else:
                    if route == "slow":
                        await asyncio.sleep(SLOW_SECONDS)
                    reply = {
                        "uuid": request["uuid"],
                        "status": 200,
                        "headers": {},
                        "payload": request["payload"],
                    }
                await ws.send_text(dumps(reply).decode())
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])  # type: ignore[return-value]


# FastAPI, plain


def _fastapi_factory() -> ASGIApp:
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                request = await ws.receive_json()
                if request.get("route") == "slow":
                    await asyncio.sleep(SLOW_SECONDS)
                await ws.send_json(
                    {
                        "uuid": request.get("uuid"),
                        "status": 200,
                        "headers": {},
                        "payload": request.get("payload"),
                    }
                )
        except WebSocketDisconnect:
            pass

    # This module postpones annotations, and FastAPI resolves them from the function's
    # globals, where the locally imported WebSocket is not: give it the real class.
    echo.__annotations__ = {"ws": WebSocket, "return": None}
    app = FastAPI()
    app.add_api_websocket_route("/ws", echo)
    return app  # type: ignore[return-value]


# The original package, 1.1.1


def _original_factory() -> ASGIApp:
    from fastapi import FastAPI
    from fastapi_observable_socket import SocketRouter

    router = SocketRouter()

    # Without `hydrate` 1.1.1 calls every handler with its (empty) `local` dict, so each
    # route hydrates to the message data it needs.
    async def hydrate(ws: Any, message: dict[str, Any]) -> Any:
        return message["payload"]

    async def data_check(message: dict[str, Any], local: dict[str, Any]) -> bool:
        return message["payload"] is not None

    async def access(ws: Any, message: dict[str, Any], local: dict[str, Any]) -> bool:
        return True

    async def dehydrate(payload: Any) -> Any:
        return payload

    @router.route("echo", {"hydrate": hydrate})
    async def echo(payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("slow", {"hydrate": hydrate})
    async def slow(payload: Any) -> dict[str, Any]:
        await asyncio.sleep(SLOW_SECONDS)
        return {"payload": payload}

    @router.route(
        "hooks",
        {"data_check": data_check, "access": access, "hydrate": hydrate, "dehydrate": dehydrate},
    )
    async def hooks(payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    app = FastAPI()
    app.websocket("/ws")(router)
    return app  # type: ignore[return-value]


# This project


def _register(router: Any) -> None:
    """The router's routes, shared by the standalone and the adapter contenders."""

    async def data_check(message: Any) -> bool:
        return message.payload is not None

    async def access(ws: Any, message: Any) -> bool:
        return True

    async def hydrate(ws: Any, message: Any) -> Any:
        return message.payload

    async def dehydrate(payload: Any) -> Any:
        return payload

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(SLOW_SECONDS)
        return {"payload": payload}

    @router.route(
        "hooks",
        {"data_check": data_check, "access": access, "hydrate": hydrate, "dehydrate": dehydrate},
    )
    async def hooks(value: Any) -> dict[str, Any]:
        return {"payload": value}

    @router.route("push")
    async def push(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        asyncio.get_running_loop().create_task(_router_pusher(ws))
        return {"payload": None}

    @router.route("subscribe")
    async def subscribe(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        conn = ws if hasattr(ws, "subscribe") else ws.state.observable
        await conn.subscribe(TOPIC)
        return {"payload": None}

    @router.route("fanout")
    async def fanout(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        publish = router.publish
        for seq in range(int(payload["count"])):
            await publish(TOPIC, FAN_PAYLOAD, {"seq": seq})
        return {"payload": None}

    try:
        import pydantic  # noqa: F401
    except ImportError:  # the `schema` extra is not installed: no typed route to measure
        return

    # The load generator's payload is [1, 2, 3, 4]: validated on the way in, checked and
    # dumped on the way out.
    @router.route("typed", {"payload": list[int], "response": list[int]})
    async def typed(ws: Any, headers: Any, payload: list[int]) -> dict[str, Any]:
        return {"payload": payload}


async def _router_pusher(ws: Any) -> None:
    """Push through the router's bounded queue, a task per frame like `_naive_pusher`."""
    # The core hands handlers its Socket; the adapter hands Starlette's WebSocket and
    # keeps the core socket in `ws.state.observable`.
    conn = ws if hasattr(ws, "push") else ws.state.observable
    push = conn.push
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()

    async def one() -> None:
        try:
            await push("tick", PUSH_PAYLOAD)
        except Exception:  # ConnectionClosed: the slow-consumer policy closed it
            stop.set()

    while not stop.is_set() and not conn.closed:
        for _ in range(PUSH_BATCH):
            task = loop.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(PUSH_PAUSE)


def _router_factory() -> ASGIApp:
    from observable_socket_asgi import SocketRouter

    router = SocketRouter()
    _register(router)
    return router  # type: ignore[return-value]


def _router_drop_factory() -> ASGIApp:
    from observable_socket_asgi import SocketRouter

    router = SocketRouter(slow_consumer="drop_oldest")
    _register(router)
    return router  # type: ignore[return-value]


def _router_redis_factory() -> ASGIApp:
    """The router on the Redis backplane at $BENCH_REDIS_URL (the fan-out scenario starts it)."""
    from observable_socket_asgi import SocketRouter

    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        raise Unavailable("BENCH_REDIS_URL is not set (the fan-out scenario starts redis-server)")
    try:
        from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane
    except ImportError as exc:
        raise Unavailable(f"redis-py is not installed: {exc}") from exc
    # subscribe() and publish() start the backplane themselves (the bench has lifespan off)
    router = SocketRouter(backplane=RedisBackplane(url))
    _register(router)
    return router  # type: ignore[return-value]


def _router_metrics_factory() -> ASGIApp:
    from observable_socket_asgi import SocketRouter

    try:
        router = SocketRouter(metrics_url="/metrics")
    except ImportError as exc:
        raise Unavailable(f"prometheus_client is not installed: {exc!r}") from exc
    _register(router)
    return router  # type: ignore[return-value]


def _router_access_factory() -> ASGIApp:
    """The router with an async access_logic that reads a token from the query string."""
    from observable_socket_asgi import SocketRouter

    async def access_logic(ws: Any) -> bool:
        return bool(ws.query_params.get("token") == ACCESS_TOKEN)

    router = SocketRouter(access_logic=access_logic)
    _register(router)
    return router  # type: ignore[return-value]


def _router_tracing_factory() -> ASGIApp:
    """Spans are recorded by the SDK and batched, then discarded: the cost of tracing
    itself, not of a collector's network."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError as exc:
        raise Unavailable(f"opentelemetry-sdk is not installed: {exc!r}") from exc
    from observable_socket_asgi import SocketRouter

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    router = SocketRouter(tracing=provider)
    _register(router)
    return router  # type: ignore[return-value]


def _socketio_factory() -> ASGIApp:
    """python-socketio on the same uvicorn: every route an event answered through its ack."""
    try:
        import socketio
    except ImportError as exc:
        raise Unavailable(f"python-socketio is not installed: {exc}") from exc

    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)

    def reply(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "uuid": data.get("uuid"),
            "status": 200,
            "headers": {},
            "payload": data.get("payload"),
        }

    @sio.on("echo")  # type: ignore[misc]
    async def echo(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        return reply(data)

    @sio.on("slow")  # type: ignore[misc]
    async def slow(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(SLOW_SECONDS)
        return reply(data)

    @sio.on("subscribe")  # type: ignore[misc]
    async def subscribe(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await sio.enter_room(sid, TOPIC)
        return reply(data)

    @sio.on("fanout")  # type: ignore[misc]
    async def fanout(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        for seq in range(int(data["payload"]["count"])):
            await sio.emit("push", _push_envelope(seq), room=TOPIC)
        return reply(data)

    return socketio.ASGIApp(sio)  # type: ignore[no-any-return]


def _channels_factory() -> ASGIApp:
    """Django Channels on the same uvicorn: an AsyncWebsocketConsumer that answers each
    envelope inline (no channel layer: idle connections and echo only)."""
    try:
        import django
        from django.conf import settings

        if not settings.configured:
            settings.configure(
                DEBUG=False,
                SECRET_KEY="bench",
                ALLOWED_HOSTS=["*"],
                INSTALLED_APPS=["channels"],
                USE_TZ=True,
            )
            django.setup()
        from channels.generic.websocket import AsyncWebsocketConsumer
        from channels.routing import ProtocolTypeRouter, URLRouter
        from django.urls import path
    except ImportError as exc:
        raise Unavailable(f"channels is not installed: {exc}") from exc

    loads, dumps = orjson.loads, orjson.dumps

    class Echo(AsyncWebsocketConsumer):  # type: ignore[misc]
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            request = loads(text_data or bytes_data or b"")
            reply = {
                "uuid": request.get("uuid"),
                "status": 200,
                "headers": {},
                "payload": request.get("payload"),
            }
            await self.send(text_data=dumps(reply).decode())

    return ProtocolTypeRouter(  # type: ignore[no-any-return]
        {"websocket": URLRouter([path("ws", Echo.as_asgi())])}
    )


def _adapter_factory() -> ASGIApp:
    try:
        from fastapi import FastAPI

        import fastapi_adapter

        router = fastapi_adapter.SocketRouter()  # type: ignore[attr-defined]
    except (ImportError, AttributeError, TypeError) as exc:
        raise Unavailable(f"fastapi_adapter.SocketRouter is not importable: {exc!r}") from exc
    _register(router)
    app = FastAPI()
    app.websocket("/ws")(router)
    return app  # type: ignore[return-value]


_FACTORIES: dict[str, Callable[[], ASGIApp]] = {
    "bare": _bare_factory,
    "starlette": _starlette_factory,
    "bare_task": _bare_task_factory,
    "fastapi": _fastapi_factory,
    "original": _original_factory,
    "router": _router_factory,
    "adapter": _adapter_factory,
    "router_drop": _router_drop_factory,
    "router_redis": _router_redis_factory,
    "router_access": _router_access_factory,
    "socketio": _socketio_factory,
    "channels": _channels_factory,
    "router_metrics": _router_metrics_factory,
    "router_tracing": _router_tracing_factory,
}
