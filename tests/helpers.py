"""Small shared pieces of the suite: the time unit, polling, scopes, tiny routers, an in-process
connector, a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Any, cast

import orjson
import uvicorn
from asgiref import testing as asgiref_testing

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.envelope import parse_message
from observable_socket_asgi.testing import websocket_scope

#: one time unit for every wait in the suite; scale it up on a slow machine
MS = float(os.environ.get("OBSERVABLE_SOCKET_TEST_MS", "1")) / 1000
TIMEOUT = 5000 * MS
#: the bound on a subprocess of the suite (an interpreter start, a CLI run)
PROCESS_TIMEOUT = max(TIMEOUT * 12, 60.0)

JS_FRAME = (
    '{"uuid":"a5e4e2e8-35c2-4b34-b40b-71faaf341206","route":"math/sum",'
    '"headers":{"token":"abc"},"payload":[1,2,3,4],"status":200}'
)
JS_PING = (
    '{"uuid":"12417fc9-fd23-4930-ac51-dab24404fea6","route":"PING",'
    '"headers":{"token":"abc"},"payload":{},"status":200}'
)


# Polling: for state owned by another task, thread or loop, with no event to wait on


async def wait_until(
    predicate: Callable[[], object], within: float = TIMEOUT, what: str = "the condition"
) -> None:
    """Poll `predicate()` until it is true; fail the test after `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 - state of another task, no event to wait on
                await asyncio.sleep(5 * MS)
    except TimeoutError:
        raise AssertionError(f"{what} was not reached within {within} s") from None


def wait_until_sync(
    predicate: Callable[[], object], within: float = TIMEOUT, what: str = "the condition"
) -> None:
    """Like `wait_until`, for a test without an event loop (blocks the calling thread)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not reached within {within} s")
        pause(10 * MS)


def pause(seconds: float) -> None:
    """Block the calling thread for `seconds` (not the event loop's: use asyncio.sleep there)."""
    threading.Event().wait(seconds)


async def on_server(server: Server, fn: Callable[[], Any]) -> Any:
    """Run `fn()` on the server's loop without blocking the caller's loop."""
    return await asyncio.to_thread(server.call, fn)


async def eventually(
    server: Server, fn: Callable[[], Any], expected: Any, within: float = TIMEOUT
) -> None:
    """Poll `fn()` on the server's loop until it equals `expected`, within a bounded time."""
    value: Any = None
    try:
        async with asyncio.timeout(within):
            while (value := await on_server(server, fn)) != expected:  # noqa: ASYNC110
                await asyncio.sleep(10 * MS)
    except TimeoutError:
        raise AssertionError(f"{fn} stayed {value!r}, expected {expected!r}") from None


def eventually_sync(
    server: Server, fn: Callable[[], Any], expected: Any, within: float = TIMEOUT
) -> None:
    """Like `eventually`, for a test without an event loop."""
    deadline = time.monotonic() + within
    while (value := server.call(fn)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"server state {value!r}, expected {expected!r}")
        pause(10 * MS)


# Tiny routers


def echo_router(**options: Any) -> SocketRouter:
    """A router with one route, `echo`, that answers its payload."""
    router = SocketRouter(**options)

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    return router


#: the three-argument ASGI callable as Starlette's types spell it
PlainASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


def plain_asgi(router: SocketRouter) -> PlainASGIApp:
    """The router typed as Starlette's `ASGIApp`, for `Mount(app=...)` and `app.mount()`.

    The router is one at run time; its `__call__` is typed with asgiref's scope TypedDicts (and
    also takes a Starlette `WebSocket`), which Starlette's `MutableMapping` signature does not
    match.
    """
    return cast(PlainASGIApp, router)


# In-process ASGI


class Communicator:
    """asgiref's `ApplicationCommunicator`, typed: asgiref ships it without annotations, and
    this is the one place the suite calls it."""

    def __init__(self, app: Any, scope: Mapping[str, Any]) -> None:
        factory: Any = asgiref_testing.ApplicationCommunicator
        self._comm: Any = factory(app, scope)

    @property
    def future(self) -> asyncio.Future[None]:
        """The app's run; done once the app returned or raised."""
        future: asyncio.Future[None] = self._comm.future
        return future

    @property
    def input_queue(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = self._comm.input_queue
        return queue

    @property
    def output_queue(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = self._comm.output_queue
        return queue

    async def send_input(self, message: Mapping[str, Any]) -> None:
        await self._comm.send_input(message)

    async def receive_output(self, timeout: float = TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        message: dict[str, Any] = await self._comm.receive_output(timeout)
        return message

    async def receive_nothing(
        self,
        timeout: float = 100 * MS,  # noqa: ASYNC109
        interval: float = 10 * MS,
    ) -> bool:
        nothing: bool = await self._comm.receive_nothing(timeout, interval)
        return nothing

    async def wait(self, timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
        await self._comm.wait(timeout)


def ws_scope(
    path: str = "/ws",
    headers: list[tuple[bytes, bytes]] | None = None,
    query_string: bytes = b"",
    **extra: Any,
) -> dict[str, Any]:
    """A websocket scope as uvicorn builds it."""
    scope = websocket_scope(
        path,
        headers or [(b"host", b"127.0.0.1:8000")],
        query_string,
        server=("127.0.0.1", 8000),
        client=("127.0.0.1", 51000),
    )
    scope.update(extra)
    return scope


def request(route: str, payload: Any = None, uuid: Any = 1, headers: Any = None) -> str:
    """Encode a request frame."""
    frame: dict[str, Any] = {"uuid": uuid, "route": route, "payload": payload}
    if headers is not None:
        frame["headers"] = headers
    return orjson.dumps(frame).decode()


class Conversation:
    """An in-process WebSocket conversation with an ASGI app over ApplicationCommunicator."""

    def __init__(self, app: Any, scope: dict[str, Any] | None = None) -> None:
        self.comm = Communicator(app, scope or ws_scope())

    async def connect(self) -> dict[str, Any]:
        await self.comm.send_input({"type": "websocket.connect"})
        return await self.comm.receive_output(TIMEOUT)

    async def send(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            await self.comm.send_input({"type": "websocket.receive", "bytes": text})
        else:
            await self.comm.send_input({"type": "websocket.receive", "text": text})

    async def output(self) -> dict[str, Any]:
        return await self.comm.receive_output(TIMEOUT)

    async def reply(self) -> dict[str, Any]:
        """The next frame the app sends, decoded."""
        message = await self.output()
        assert message["type"] == "websocket.send", message
        reply: dict[str, Any] = parse_message(message["text"])  # integers of any size exact
        return reply

    async def ask(self, text: str | bytes) -> dict[str, Any]:
        await self.send(text)
        return await self.reply()

    async def nothing(self, timeout: float = 50 * MS) -> bool:  # noqa: ASYNC109
        return await self.comm.receive_nothing(timeout)

    async def disconnect(self, code: int = 1000) -> None:
        await self.comm.send_input({"type": "websocket.disconnect", "code": code})
        await self.comm.wait(TIMEOUT)


@contextlib.asynccontextmanager
async def conversation(
    app: Any, scope: dict[str, Any] | None = None
) -> AsyncIterator[Conversation]:
    """Connect (expecting accept), yield, then disconnect and wait for the app to return."""
    conv = Conversation(app, scope)
    accepted = await conv.connect()
    assert accepted["type"] == "websocket.accept", accepted
    try:
        yield conv
    finally:
        with contextlib.suppress(Exception):
            await conv.disconnect()


def free_socket() -> socket.socket:
    """A listening socket bound to a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where a connection is refused, for the length of the block.

    The port stays bound (never listening) until the block ends: a port bound and closed at
    once could be taken by another copy of the suite running at the same time, and answer.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class Server:
    """A real uvicorn server on 127.0.0.1, in a thread with its own event loop."""

    def __init__(self, app: Any, ws: str = "websockets-sansio", **options: Any) -> None:
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        options.setdefault("lifespan", "auto")
        config = uvicorn.Config(app, ws=ws, log_level="warning", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self.sock])

    def start(self) -> None:
        self.thread.start()
        for _ in range(1001):
            if self.server.started:
                return
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn failed to start")
            pause(10 * MS)
        raise RuntimeError("uvicorn did not start in time")

    def call(self, fn: Any, timeout: float = TIMEOUT) -> Any:
        """Run `fn()` on the server's loop and return its result (for inspecting state)."""
        assert self.loop is not None

        async def runner() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.ident is not None:  # started
            self.thread.join(30)
        self.sock.close()


@contextlib.contextmanager
def running(app: Any, ws: str = "websockets-sansio", **options: Any) -> Iterator[Server]:
    """Run `app` on real uvicorn for the duration of the block; stopped (and its socket
    closed) however the block ends, also when the start itself fails."""
    server = Server(app, ws=ws, **options)
    try:
        server.start()
        yield server
    finally:
        server.stop()


WS_IMPLEMENTATIONS = ["websockets-sansio", "websockets", "wsproto"]
