"""Typed validation is bounded whatever the frame: a hostile 1 MiB payload costs about what
a valid one does, and another client's PING is not held behind it."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from observable_socket_asgi import SocketRouter
from observable_socket_asgi._schema import FULL_COUNT_NODES, Invalid, Schema
from tests.helpers import running

MIB = 1024 * 1024
UNION = list[int | str | list[int] | dict[str, int]]


def typed_router() -> SocketRouter:
    """One route taking a list of a four-way union: every `null` fails four times."""
    router = SocketRouter(max_message_bytes=2 * MIB)

    @router.route("items", {"payload": UNION})
    async def items(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": len(payload)}

    return router


def hostile_frame() -> str:
    """1 MiB of nulls: 838,860 validation errors for pydantic to build, unbounded."""
    nulls = ",".join(["null"] * (MIB // 5))
    return '{"uuid":"bad","route":"items","payload":[' + nulls + "]}"


async def ping(ws: Any, uuid: int) -> float:
    """The round trip of one PING, in seconds."""
    start = time.perf_counter()
    await ws.send(json.dumps({"uuid": uuid, "route": "PING"}))
    while json.loads(await ws.recv(decode=True)).get("uuid") != uuid:
        pass
    return time.perf_counter() - start


async def test_a_hostile_frame_builds_few_errors_and_does_not_hold_a_ping() -> None:
    """The hostile frame's 400 lists at most 10 errors and counted only those found before
    validation stopped (the work done); another client's PING meanwhile takes about its
    unloaded time (bound generous: one second over the unloaded median)."""
    with running(typed_router()) as server:
        async with connect(server.url, max_size=None) as bad, connect(server.url) as other:
            unloaded = statistics.median([await ping(other, i) for i in range(5)])
            await bad.send(hostile_frame())
            loaded = await ping(other, 99)
            reply = json.loads(await bad.recv(decode=True))
    assert reply["uuid"] == "bad" and reply["status"] == 400
    assert len(reply["payload"]["errors"]) <= 10
    assert reply["payload"]["error_count"] < 100  # 838,860 when every error was built
    assert loaded < unloaded + 1.0, (loaded, unloaded)


def test_small_payloads_count_every_error_large_ones_stop_early() -> None:
    """Up to FULL_COUNT_NODES values, error_count counts all; past it, what was found."""
    schema = Schema.build(UNION, 10, "route 'items'")
    small: list[Any] = ["ok", None] * 100
    with pytest.raises(Invalid) as small_info:
        schema.validate(small)
    exc = small_info.value
    assert exc.complete and exc.count == 400 and len(exc.errors) == 10
    large: list[Any] = [None] * (FULL_COUNT_NODES + 1)
    with pytest.raises(Invalid) as large_info:
        schema.validate(large)
    exc = large_info.value
    assert not exc.complete and exc.count == 4 and "or more" in str(exc)
    assert schema.validate([1, "a", [2], {"k": 3}]) == [1, "a", [2], {"k": 3}]


def test_fail_fast_keeps_what_a_valid_payload_becomes() -> None:
    """The fail-fast validator returns what pydantic's own would, models included."""
    from pydantic import BaseModel

    class Point(BaseModel):
        x: int
        tags: dict[str, list[int]]

    schema = Schema.build(list[Point], 10, "route 'points'")
    value = [{"x": 1, "tags": {"a": [1, 2]}}]
    assert schema.validate(value) == schema.adapter.validate_python(value)
    with pytest.raises(Invalid) as info:
        schema.validate([{"x": "no", "tags": {"a": ["b"] * 50}}] * 3)
    assert info.value.complete and info.value.count == 153
