"""The router on every ASGI server the suite knows: uvicorn (each WebSocket implementation),
Hypercorn, Granian and Daphne, each a real process on 127.0.0.1 and a real `websockets` client.

The shared protocol cases and the bundled examples run on each. Then one test per row of the
"Servers" table (docs/servers.md) checks what differs between servers, so it cannot go stale.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from tests.helpers import MS, PROCESS_TIMEOUT, TIMEOUT, request, wait_until
from tests.protocol_cases import CASES, connector
from tests.servers import SERVERS, ServerProcess, serving

pytestmark = pytest.mark.e2e

UVICORNS = [name for name in SERVERS if name.startswith("uvicorn-")]
MIB = 1024 * 1024


async def ask(ws: ClientConnection, frame: str | bytes) -> dict[str, Any]:
    await ws.send(frame)
    async with asyncio.timeout(TIMEOUT * 2):
        reply: dict[str, Any] = orjson.loads(await ws.recv())
    return reply


async def closed_by_server(ws: ClientConnection, frame: str = "") -> ConnectionClosed:
    """Send `frame` if given, then wait for the server to end the connection; the exception
    says how it ended (a large frame may meet the close while it is still being sent)."""
    try:
        if frame:
            await ws.send(frame)
        async with asyncio.timeout(TIMEOUT * 2):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover


# The shared protocol cases, on every server


@pytest.fixture(scope="module", params=SERVERS)
def protocol_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serving(request.param, "tests.server_apps:protocol_app") as server:
        yield server


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__.removeprefix("case_"))
def test_protocol_on_every_server(protocol_server: ServerProcess, case: Any) -> None:
    """PROTOCOL.md, as the shared cases check it, holds on each server."""
    asyncio.run(case(connector(protocol_server.url)), debug=True)


# The bundled examples, on every server


@pytest.mark.parametrize("server", SERVERS)
def test_demo_example_on_every_server(server: str, tmp_path: Path) -> None:
    """examples/app.py: the quickstart route, the article route on SQLite, and pushed ticks."""
    env = {"EXAMPLES_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'articles.db'}"}

    async def run(url: str) -> list[dict[str, Any]]:
        async with asyncio.timeout(TIMEOUT * 2), connect(url) as ws:
            await ws.send(request("math/sum", [1, 2, 3, 4], uuid=1))
            await ws.send(request("get-article", uuid=2, headers={"article": 3}))
            await ws.send(request("get-article", uuid=3, headers={"article": "x"}))
            await ws.send(request("clock/ticks", 2, uuid=4))
            return [orjson.loads(await ws.recv()) for _ in range(6)]

    with serving(server, "examples.app:app", env=env) as proc:
        frames = asyncio.run(run(f"{proc.url}/ws?user=alice"))
    answers = {f["uuid"]: f for f in frames if f.get("route") is None}
    ticks = [f["payload"]["n"] for f in frames if f.get("route") == "clock/tick"]
    assert answers[1]["payload"] == {"sum": 10}
    assert answers[2]["status"] == 200 and answers[2]["payload"]["title"] == "Alice's drafts"
    assert answers[3]["status"] == 400
    assert answers[4]["status"] == 202
    assert ticks == [1, 2]


@pytest.mark.parametrize("server", SERVERS)
def test_fastapi_example_on_every_server(server: str, tmp_path: Path) -> None:
    """examples/fastapi_app.py answers on each of its four ways of serving the router."""
    env = {"EXAMPLES_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'articles.db'}"}

    async def run(base: str) -> list[Any]:
        payloads = []
        for path in ("/ws", "/ws2", "/ws3", "/ws4/"):
            async with asyncio.timeout(TIMEOUT * 2), connect(base + path) as ws:
                payloads.append((await ask(ws, request("math/sum", [1, 2, 3, 4])))["payload"])
        return payloads

    with serving(server, "examples.fastapi_app:app", env=env) as proc:
        payloads = asyncio.run(run(proc.url))
    assert payloads == [{"sum": 10}] * 4


# Where servers differ: one test per row of the "Servers" table (docs/servers.md)

#: how a server ends a connection whose incoming message is over its default limit:
#: the close code the client reads, None for a dropped connection without a close frame
OVER_LIMIT_CLOSE = {
    "uvicorn-websockets-sansio": 1009,
    "uvicorn-websockets": 1009,
    "uvicorn-wsproto": 1009,
    "hypercorn": 1009,
    "granian": 1005,
    "daphne": None,
}
#: the largest incoming message each server takes by default
DEFAULT_LIMIT = {name: 16 * MIB for name in SERVERS} | {"daphne": 1 * MIB}


@pytest.mark.parametrize("server", SERVERS)
def test_largest_incoming_message(server: str) -> None:
    """Up to the server's default limit a frame reaches the router; past it the server closes
    (with the router's own limit raised out of the way)."""
    limit = DEFAULT_LIMIT[server]

    async def run(url: str) -> None:
        async with connect(url, max_size=None) as ws:
            fits = "y" * (limit - 200)
            assert (await ask(ws, request("echo", fits)))["payload"] == fits
            closed = await closed_by_server(ws, request("echo", "y" * (limit + 200)))
        code = closed.rcvd.code if closed.rcvd is not None else None
        assert code == OVER_LIMIT_CLOSE[server], closed

    with serving(server, "tests.server_apps:big_app") as proc:
        asyncio.run(run(proc.url))


@pytest.mark.parametrize("server", SERVERS)
def test_router_413_before_the_server_limit(server: str) -> None:
    """The router's default limit (1 MiB) answers 413 and keeps the connection, except on
    Daphne, whose own 1 MiB limit drops the connection first."""

    async def run(url: str) -> None:
        async with connect(url, max_size=None) as ws:
            await ws.send(request("echo", "y" * (MIB + 200), uuid="big"))
            if server == "daphne":
                assert (await closed_by_server(ws)).rcvd is None
                return
            reply = await ask(ws, request("echo", 0, uuid="next"))
            assert (reply["uuid"], reply["status"]) == ("big", 413)
            assert (orjson.loads(await ws.recv()))["uuid"] == "next"

    with serving(server, "tests.server_apps:protocol_app") as proc:
        asyncio.run(run(proc.url))


#: the close code a client reads when the server stops with a handler in flight (None:
#: the TCP connection is dropped without a close frame, which the client reads as 1006)
SHUTDOWN_CLOSE = {name: 1012 for name in UVICORNS} | {
    "hypercorn": 1011,
    "granian": None,
    "daphne": None,
}
#: Hypercorn on Python 3.12+ waits for every open connection to end before it exits, past
#: its graceful timeout (it awaits `asyncio.Server.wait_closed()`, which waits for open
#: connections since Python 3.12.1)
HYPERCORN_WAITS_FOR_CLIENTS = sys.version_info >= (3, 12)


def refuses_connections(port: int) -> bool:
    """True once nothing listens on `port` any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except OSError:
        return True
    return False


@pytest.mark.parametrize("server", SERVERS)
def test_close_code_on_shutdown(server: str) -> None:
    """Ctrl-C on the server with a handler in flight: the close the client reads; on
    uvicorn also that the handler is cancelled and nothing is logged as an error."""
    options = {"--graceful-timeout": "1"} if server == "hypercorn" else {}  # whole seconds
    waits_for_clients = server == "hypercorn" and HYPERCORN_WAITS_FOR_CLIENTS
    with serving(server, "tests.server_apps:hold_app", options) as proc:

        async def run() -> ConnectionClosed | None:
            async with connect(proc.url) as ws:
                await ws.send(request("hold", "x"))
                async with asyncio.timeout(TIMEOUT):
                    while "held x" not in proc.log():  # noqa: ASYNC110 - another process
                        await asyncio.sleep(10 * MS)
                stopper = threading.Thread(target=proc.stop)
                stopper.start()
                if waits_for_clients:
                    # the server has taken the signal (it stopped listening), yet this
                    # socket stays open; the process exits only once the client leaves
                    await wait_until(lambda: refuses_connections(proc.port), TIMEOUT * 2)
                    assert ws.state is State.OPEN
                    closed = None
                else:
                    closed = await closed_by_server(ws)
            await asyncio.to_thread(stopper.join, PROCESS_TIMEOUT)
            assert not stopper.is_alive()
            return closed

        closed = asyncio.run(run())
        log = proc.log()
    if waits_for_clients:
        assert closed is None
        return
    assert closed is not None
    code = closed.rcvd.code if closed.rcvd is not None else None
    assert code == SHUTDOWN_CLOSE[server], (closed, log)
    if server in UVICORNS:
        assert "cancelled x" in log, log
        assert "Traceback" not in log and "ERROR" not in log, log


#: servers that offer the `websocket.http.response` extension (deny a handshake with an
#: HTTP response of the app's choosing)
DENIAL_EXTENSION = {name: True for name in SERVERS} | {"daphne": False}


@pytest.mark.parametrize("server", SERVERS)
def test_denial_response_extension(server: str) -> None:
    """Whether the scope lists `websocket.http.response`, and where it does, a handshake the
    app denies reaches the client as that HTTP status."""

    async def run(url: str) -> None:
        async with connect(url) as ws:
            extensions = (await ask(ws, "scope"))["extensions"]
        assert ("websocket.http.response" in extensions) is DENIAL_EXTENSION[server]
        if DENIAL_EXTENSION[server]:
            with pytest.raises(InvalidStatus) as info:
                await connect(url + "/deny")
            assert info.value.response.status_code == 503
            assert info.value.response.body == b"busy"

    with serving(server, "tests.server_apps:probe_app") as proc:
        asyncio.run(run(proc.url))


@pytest.mark.parametrize("server", SERVERS)
def test_subprotocols(server: str) -> None:
    """Every server hands the offered subprotocols to the app and returns the one it picks;
    the router picks none, so a client offering one gets none back."""

    async def run(probe_url: str, router_url: str) -> None:
        async with connect(probe_url, subprotocols=["a.v1", "b"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "a.v1"
            assert (await ask(ws, "scope"))["subprotocols"] == ["a.v1", "b"]
        async with connect(router_url, subprotocols=["a.v1"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol is None
            assert (await ask(ws, request("echo", 1)))["payload"] == 1

    with (
        serving(server, "tests.server_apps:probe_app") as probe,
        serving(server, "tests.server_apps:protocol_app") as router,
    ):
        asyncio.run(run(probe.url, router.url))


class PingCounter(ClientConnection):
    """A client connection that counts the pings the server sends."""

    pings = 0

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            PingCounter.pings += 1
        super().process_event(event)


#: the flag that makes each server send protocol pings (its default in the Servers table);
#: Granian has no such setting
PING_FLAG = {
    **{name: ("--ws-ping-interval", str(200 * MS)) for name in UVICORNS},
    "hypercorn": ("--websocket-ping-interval", "1"),  # whole seconds
    "daphne": ("--ping-interval", "1"),
}


@pytest.mark.parametrize("server", SERVERS)
def test_protocol_pings(server: str) -> None:
    """Every server answers a client's ping; those with a ping setting send their own."""

    async def run(url: str) -> None:
        PingCounter.pings = 0
        async with connect(url, create_connection=PingCounter, ping_interval=None) as ws:
            async with asyncio.timeout(TIMEOUT):
                await (await ws.ping())
            if server in PING_FLAG:
                async with asyncio.timeout(TIMEOUT * 2):
                    while PingCounter.pings == 0:  # noqa: ASYNC110 - counted by the connection
                        await asyncio.sleep(10 * MS)
                assert (await ask(ws, request("echo", 1)))["payload"] == 1

    flag = PING_FLAG.get(server)
    options = dict([flag]) if flag else {}
    with serving(server, "tests.server_apps:protocol_app", options) as proc:
        asyncio.run(run(proc.url))
    if server == "granian":
        # no setting to turn server pings on: the read timeouts of a proxy must allow for it
        help_text = subprocess.run(
            [sys.executable, "-m", "granian", "--help"],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        ).stdout
        assert "--port" in help_text
        assert not re.search(r"--(ws|websocket)\S*ping", help_text)


def test_daphne_closes_every_websocket_after_websocket_timeout() -> None:
    """Daphne ends each WebSocket after `--websocket_timeout` seconds (86400 by default)."""

    async def run(url: str) -> ConnectionClosed:
        async with connect(url) as ws:
            assert (await ask(ws, request("echo", 1)))["payload"] == 1
            return await closed_by_server(ws)

    options = {"--websocket_timeout": "1"}
    with serving("daphne", "tests.server_apps:protocol_app", options) as proc:
        closed = asyncio.run(run(proc.url))
    assert closed.rcvd is not None and closed.rcvd.code == 1000, closed


def test_readme_servers_table_names_these_tests() -> None:
    """Each row of the "Servers" table (docs/servers.md) names a test of this file that
    exists, and every test of a difference here has its row."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "servers.md").read_text()
    section = page.split("# Servers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`test_" in line]
    cited = {re.findall(r"`(test_\w+)`", row)[-1] for row in rows}
    differences = {
        name
        for name in globals()
        if name.startswith("test_")
        and not name.startswith(("test_protocol_on", "test_demo_", "test_fastapi_", "test_readme"))
    }
    assert cited == differences
    header = section.split("\n|---", 1)[0].splitlines()[-1]
    assert all(name in header for name in ("uvicorn", "Hypercorn", "Granian", "Daphne"))
