"""Small shared pieces of the suite: scopes, an in-process connector, a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import uvicorn
from asgiref.testing import ApplicationCommunicator

from observable_socket_asgi.testing import websocket_scope

#: one time unit for every wait in the suite; scale it up on a slow machine
MS = float(os.environ.get("OBSERVABLE_SOCKET_TEST_MS", "1")) / 1000
TIMEOUT = 5000 * MS

JS_FRAME = (
    '{"uuid":"a5e4e2e8-35c2-4b34-b40b-71faaf341206","route":"math/sum",'
    '"headers":{"token":"abc"},"payload":[1,2,3,4],"status":200}'
)
JS_PING = (
    '{"uuid":"12417fc9-fd23-4930-ac51-dab24404fea6","route":"PING",'
    '"headers":{"token":"abc"},"payload":{},"status":200}'
)


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
        self.comm = ApplicationCommunicator(app, scope or ws_scope())

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
        return orjson.loads(message["text"])

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
        for _ in range(int(10_000 * MS / 0.01) + 1):
            if self.server.started:
                return
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn failed to start")
            threading.Event().wait(0.01)
        raise RuntimeError("uvicorn did not start in time")

    def call(self, fn: Any, timeout: float = TIMEOUT) -> Any:
        """Run `fn()` on the server's loop and return its result (for inspecting state)."""
        assert self.loop is not None

        async def runner() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@contextlib.contextmanager
def running(app: Any, ws: str = "websockets-sansio", **options: Any) -> Iterator[Server]:
    """Run `app` on real uvicorn for the duration of the block."""
    server = Server(app, ws=ws, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


WS_IMPLEMENTATIONS = ["websockets-sansio", "websockets", "wsproto"]
