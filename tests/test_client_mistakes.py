"""Client mistakes are answered as client mistakes, and refused clients learn nothing of a
route's payload: on a real server."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel
from websockets.asyncio.client import connect

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.errors import BadRequest, InvalidPosition, SubscriptionLimitError
from observable_socket_asgi.server import pipeline
from tests.helpers import running


class Transfer(BaseModel):
    secret_account_field: int
    amount_in_cents: int


def mistakes_router() -> SocketRouter:
    """Handlers that let the library's client-mistake errors escape, and a typed route
    guarded by `access`."""
    router = SocketRouter(history_size=10, max_topics=1)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe(payload["topic"], since=payload.get("since"))
        return {"payload": None}

    @router.route("refuse")
    async def refuse(ws: Any, headers: Any, payload: Any) -> Any:
        raise BadRequest("amount must be positive", 409)

    def access(ws: Any, message: Any) -> bool:
        return bool(message.headers.get("token") == "yes")

    @router.route("transfer", {"payload": Transfer, "access": access})
    async def transfer(ws: Any, headers: Any, payload: Transfer) -> Any:
        return {"payload": payload.amount_in_cents}

    return router


async def ask(ws: Any, uuid: int, route: str, payload: Any, headers: Any = None) -> Any:
    await ws.send(
        json.dumps({"uuid": uuid, "route": route, "payload": payload, "headers": headers})
    )
    return json.loads(await ws.recv(decode=True))


def mistake_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "observable_socket_asgi.pipeline"]


@pytest.fixture(autouse=True)
def fresh_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts its own summary period."""
    monkeypatch.setattr(pipeline, "_mistakes", pipeline._Mistakes())


async def test_escaped_client_mistakes_answer_their_status_and_warn_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A malformed `since` (5 times) and a subscribe past max_topics: 400 with the uuid; the
    log has one warning line per kind, no traceback, no ERROR."""
    caplog.set_level(logging.WARNING, "observable_socket_asgi")
    with running(mistakes_router()) as server:
        async with connect(server.url) as ws:
            for uuid in range(5):
                bad = await ask(ws, uuid, "join", {"topic": "a", "since": "yesterday"})
                assert (bad["uuid"], bad["status"]) == (uuid, 400), bad
                assert "since must be None" in bad["payload"]["message"]
            assert (await ask(ws, 10, "join", {"topic": "a"}))["status"] == 200
            over = await ask(ws, 11, "join", {"topic": "b"})
            assert (over["uuid"], over["status"]) == (11, 400)
            assert (
                "max_topics" in over["payload"]["message"] or "topics" in over["payload"]["message"]
            )
            own = await ask(ws, 12, "refuse", None)
            assert (own["status"], own["payload"]) == (409, {"message": "amount must be positive"})
    lines = mistake_lines(caplog)
    assert [r.levelno for r in lines] == [logging.WARNING] * 3, [r.getMessage() for r in lines]
    assert all(r.exc_info is None for r in lines)
    assert "InvalidPosition" in lines[0].getMessage()
    assert "SubscriptionLimitError" in lines[1].getMessage()


def test_repeats_are_summarised_in_the_next_line(caplog: pytest.LogCaptureFixture) -> None:
    """Within the interval mistakes are counted; the next line says how many."""
    caplog.set_level(logging.WARNING, "observable_socket_asgi")
    mistakes = pipeline._Mistakes(interval=3600.0)
    for uuid in range(4):
        mistakes.note("join", uuid, InvalidPosition("since must be None"))
    assert len(mistake_lines(caplog)) == 1
    mistakes.interval = 0.0
    mistakes.note("join", 9, InvalidPosition("since must be None"))
    assert "(3 more since the last line)" in mistake_lines(caplog)[-1].getMessage()
    assert issubclass(SubscriptionLimitError, ValueError)  # raised as before


async def test_a_refused_client_learns_nothing_of_the_payload_type() -> None:
    """An invalid payload from a client `access` refuses gets 403 without field names; an
    allowed one gets the 400 with the errors; a valid one from a refused client, 403."""
    with running(mistakes_router()) as server:
        async with connect(server.url) as ws:
            refused = await ask(ws, 1, "transfer", {"x": 1})
            allowed = await ask(ws, 2, "transfer", {"x": 1}, {"token": "yes"})
            valid = await ask(ws, 3, "transfer", {"secret_account_field": 1, "amount_in_cents": 2})
    assert refused["status"] == 403 and "secret_account_field" not in json.dumps(refused)
    assert allowed["status"] == 400 and "secret_account_field" in json.dumps(allowed)
    assert valid["status"] == 403
