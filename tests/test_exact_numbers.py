"""Numbers arrive exactly as sent, or are refused: integers past 64 bits on a real server,
through the Python client and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import connect

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.client import connect as client_connect
from observable_socket_asgi.envelope import parse_json, parse_request
from observable_socket_asgi.errors import ProtocolError
from tests.helpers import PROCESS_TIMEOUT, TIMEOUT, running

BIG = [
    123456789012345678901234567890,
    -(2**70),
    2**64,
    -(2**63) - 1,
    10**299 + 7,
]


def number_router() -> SocketRouter:
    """echo, a Decimal-typed route, math/sum, and a route that publishes what it receives."""
    router = SocketRouter()
    calls: list[Any] = []

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> Any:
        return {"headers": headers, "payload": payload}

    @router.route("decimal")
    async def decimal(ws: Any, headers: Any, payload: Decimal) -> Any:
        return {"payload": {"text": str(payload), "exact": payload == Decimal(str(BIG[0]))}}

    @router.route("math/sum")
    async def total(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": {"sum": sum(payload or [])}}

    @router.route("once", {"idempotent": True})
    async def once(ws: Any, headers: Any, payload: Any) -> Any:
        calls.append(payload)
        return {"payload": payload}

    @router.route("listen")
    async def listen(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe("numbers")
        return {"payload": None}

    @router.route("publish")
    async def publish(ws: Any, headers: Any, payload: Any) -> Any:
        await router.publish("numbers", payload)
        return {"payload": None}

    return router


def frame(route: str, payload: Any, uuid: int = 1, headers: Any = None) -> str:
    """A request written by the standard library, which writes integers of any size."""
    return json.dumps({"uuid": uuid, "route": route, "headers": headers, "payload": payload})


async def test_integers_past_64_bits_come_back_exactly() -> None:
    """Big integers in the payload, nested, and in headers are echoed digit for digit."""
    payload = {"list": BIG, "nested": {"deep": [[BIG[1]]]}, "plain": [1, 2.5]}
    with running(number_router()) as server:
        async with connect(server.url) as ws:
            await ws.send(frame("echo", payload, uuid=7, headers={"n": BIG[2]}))
            reply = json.loads(await ws.recv(decode=True))
            assert reply["uuid"] == 7 and reply["status"] == 200
            assert reply["payload"] == payload
            assert reply["headers"] == {"n": BIG[2]}
            for n in BIG:
                assert type(n) is int

            await ws.send(frame("math/sum", [2**70, 1]))
            assert json.loads(await ws.recv(decode=True))["payload"] == {"sum": 2**70 + 1}

            await ws.send(frame("decimal", BIG[0]))
            assert json.loads(await ws.recv(decode=True))["payload"] == {
                "text": str(BIG[0]),
                "exact": True,
            }


async def test_an_idempotent_route_takes_big_integers() -> None:
    """The run-once fingerprint digests big integers: a retry gets the first answer."""
    with running(number_router()) as server:
        async with connect(server.url) as ws:
            for _ in range(2):
                await ws.send(frame("once", {"n": BIG}, uuid=5))
                reply = json.loads(await ws.recv(decode=True))
                assert (reply["status"], reply["payload"]) == (200, {"n": BIG}), reply


async def test_a_publish_carries_big_integers_exactly() -> None:
    """A push of what a client sent holds the same integers."""
    with running(number_router()) as server:
        async with connect(server.url) as listener, connect(server.url) as sender:
            await listener.send(frame("listen", None))
            assert json.loads(await listener.recv(decode=True))["status"] == 200
            await sender.send(frame("publish", {"n": BIG}))
            assert json.loads(await sender.recv(decode=True))["status"] == 200
            push = json.loads(await listener.recv(decode=True))
            assert push["route"] == "numbers" and push["payload"] == {"n": BIG}


async def test_numbers_json_cannot_carry_are_refused_by_name() -> None:
    """1e400 and a 5,000-digit integer are answered 400 with the uuid and where they are."""
    cases = [
        ('{"uuid":3,"route":"echo","payload":{"x":[1,1e400]}}', "payload.x[1]"),
        ('{"uuid":3,"route":"echo","payload":{"y":' + "9" * 5000 + "}}", "payload.y"),
    ]
    with running(number_router()) as server:
        async with connect(server.url) as ws:
            for text, where in cases:
                await ws.send(text)
                reply = json.loads(await ws.recv(decode=True))
                assert reply["uuid"] == 3 and reply["status"] == 400, reply
                assert reply["payload"]["message"].startswith(where + ":"), reply


async def test_the_python_client_sends_and_reads_big_integers() -> None:
    """`Client.request` writes integers past 64 bits and reads them back exactly."""
    with running(number_router()) as server:
        async with client_connect(server.url, reconnect=False, timeout=TIMEOUT) as sock:
            res = await sock.request("echo", {"n": BIG})
    assert res.status == 200 and res.payload == {"n": BIG}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observable_socket_asgi", *args],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def test_the_cli_carries_big_integers_and_refuses_what_json_cannot() -> None:
    """`call` echoes 2**70 exactly; 1e400, NaN and Infinity exit 2 with a message, no
    traceback and nothing sent as null."""
    with running(number_router()) as server:
        done = run_cli("call", server.url, "echo", f"[{2**70}, {-(2**70)}]")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["payload"] == [2**70, -(2**70)]
        for bad in ("1e400", "[NaN]", '{"a": -Infinity}'):
            refused = run_cli("call", server.url, "echo", bad)
            assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
            assert "Traceback" not in refused.stderr and "cannot be carried" in refused.stderr
            assert refused.stdout == ""


def test_parse_request_keeps_integers_exact() -> None:
    """The sans-I/O parser: every big integer is an exact int, floats stay floats."""
    request = parse_request(frame("echo", [*BIG, 0.5], headers={"n": BIG[3]}))
    assert request.payload == [*BIG, 0.5] and request.headers == {"n": BIG[3]}
    assert [type(n) for n in request.payload] == [int] * len(BIG) + [float]


@pytest.mark.parametrize("text", ["1e400", "[NaN]", "[Infinity]", "9" * 4301])
def test_parse_json_refuses_what_a_frame_cannot_carry(text: str) -> None:
    """What the command line accepts is what a frame can carry."""
    with pytest.raises(ProtocolError, match="cannot be carried"):
        parse_json(text)
