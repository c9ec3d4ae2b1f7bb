"""A router served by uvicorn in a child process, and a raw WebSocket client.

Memory is measured from the server process's own RSS, so the server runs apart from the
test (and its client). The child serves on a socket the test bound to port 0 and handed down,
so there is no port race and no sleep: the first handshake completes once it serves.

The raw client speaks just enough RFC 6455 and RFC 7692 to send what a well-behaved client
library will not: a hand-made permessage-deflate frame.

Run as `python -m tests.edge_apps FD WS_IMPL` with router options as JSON in
`EDGE_ROUTER_OPTIONS` and uvicorn's in `EDGE_UVICORN_OPTIONS`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from observable_socket_asgi import SocketRouter
from tests.helpers import TIMEOUT, free_socket

ROOT = Path(__file__).resolve().parent.parent


def make_app(options: dict[str, Any]) -> SocketRouter:
    """The child's router: echo, and a topic to fan out to."""
    if "rate_limit" in options and options["rate_limit"] is not None:
        options["rate_limit"] = tuple(options["rate_limit"])
    router = SocketRouter(**options)

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await ws.subscribe(payload)
        return {"payload": "joined"}

    @router.route("publish")
    async def publish(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await router.publish(payload["topic"], payload["body"])
        return {"payload": "published"}

    return router


class Child:
    """A uvicorn process serving `make_app(options)`; `rss()` and `peak()` read its memory."""

    def __init__(
        self, ws: str, uvicorn_options: dict[str, Any] | None = None, **options: Any
    ) -> None:
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        env = dict(os.environ, EDGE_ROUTER_OPTIONS=json.dumps(options))
        env["EDGE_UVICORN_OPTIONS"] = json.dumps(uvicorn_options or {})
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.edge_apps", str(self.sock.fileno()), ws],
            pass_fds=[self.sock.fileno()],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"{field} not in /proc status")

    def rss(self) -> int:
        """The server's resident memory now, in bytes."""
        return self._status("VmRSS")

    def reset_peak(self) -> None:
        """Start a new peak measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def peak(self) -> int:
        """The server's peak resident memory since the last `reset_peak()`, in bytes."""
        return self._status("VmHWM")

    def stop(self) -> str:
        """Stop the server and return what it wrote to stderr."""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=2 * TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.sock.close()
        return err.decode(errors="replace")


@contextlib.contextmanager
def child(
    ws: str, uvicorn_options: dict[str, Any] | None = None, **options: Any
) -> Iterator[Child]:
    """Run a `Child` for the duration of the block; it is ready once `wait_ready` returns."""
    server = Child(ws, uvicorn_options, **options)
    try:
        asyncio.run(wait_ready(server.url))
        yield server
    finally:
        server.stop()


async def wait_ready(url: str) -> None:
    from websockets.asyncio.client import connect

    async with asyncio.timeout(30 * TIMEOUT), connect(url, open_timeout=30 * TIMEOUT) as ws:
        await ws.send('{"uuid":"ready","route":"PING"}')
        await ws.recv()


# A raw client


class RawClient:
    """A bare WebSocket client over asyncio streams; negotiates permessage-deflate on request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.deflate = False

    @classmethod
    async def open(cls, port: int, deflate: bool = False) -> RawClient:
        """Connect and complete the handshake; the socket is closed if the handshake fails.
        Prefer `raw_client()`, which also closes it when the test fails."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await cls._handshake(reader, writer, port, deflate)
        except BaseException:
            # a socket left to the garbage collector warns (ResourceWarning) in whichever
            # test runs then, which pytest reports as that test's failure
            writer.transport.abort()
            raise

    @classmethod
    async def _handshake(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, deflate: bool
    ) -> RawClient:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET / HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if deflate:
            lines.append(
                "Sec-WebSocket-Extensions: permessage-deflate; "
                "client_no_context_takeover; server_no_context_takeover"
            )
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        assert head.startswith("HTTP/1.1 101"), head
        client = cls(reader, writer)
        client.deflate = "permessage-deflate" in head.lower()
        assert client.deflate == deflate, head
        return client

    def send_frame(self, payload: bytes, opcode: int = 0x1, compressed: bool = False) -> None:
        """Write one masked, final frame; `compressed` sets RSV1 (payload already deflated)."""
        first = 0x80 | (0x40 if compressed else 0) | opcode
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", first, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", first, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, size)
        mask = os.urandom(4)
        masked = _xor(payload, mask)
        self.writer.write(header + mask + masked)

    def send_compressed_text(self, text: bytes) -> int:
        """Deflate `text` as RFC 7692 says and send it; return the bytes put on the wire."""
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = deflater.compress(text) + deflater.flush(zlib.Z_SYNC_FLUSH)
        assert body.endswith(b"\x00\x00\xff\xff")
        body = body[:-4]
        self.send_frame(body, compressed=True)
        return len(body)

    async def recv(self) -> tuple[int, bytes]:
        """Read one frame from the server: (opcode, payload), inflated when compressed."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(size)
        if first & 0x40:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        return first & 0x0F, payload

    async def recv_json(self) -> dict[str, Any]:
        while True:
            opcode, payload = await asyncio.wait_for(self.recv(), TIMEOUT)
            if opcode in (0x1, 0x2):
                obj: dict[str, Any] = orjson.loads(payload)
                return obj
            assert opcode != 0x8, f"closed: {payload!r}"

    async def close(self) -> None:
        """Drop the connection at once (a client that leaves without a close handshake); a
        graceful close would wait for buffered frames the server may never read."""
        self.writer.transport.abort()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_client(port: int, deflate: bool = False) -> AsyncIterator[RawClient]:
    """A `RawClient` for the block, dropped at its end however the block ends: a test that
    fails half-way must not leave its socket to be collected during a later test."""
    client = await RawClient.open(port, deflate)
    try:
        yield client
    finally:
        await client.close()


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    value = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(data), "big")


def main() -> None:
    import uvicorn

    fd, ws = int(sys.argv[1]), sys.argv[2]
    options = json.loads(os.environ.get("EDGE_ROUTER_OPTIONS", "{}"))
    server_options = json.loads(os.environ.get("EDGE_UVICORN_OPTIONS", "{}"))
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        make_app(options), ws=ws, log_level="warning", lifespan="on", **server_options
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
