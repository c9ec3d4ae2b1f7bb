"""Presence in one process: members, join/leave pushes, leaving on disconnect, bad info."""

from __future__ import annotations

from typing import Any

import pytest

from observable_socket_asgi import BadRequest, EncodeError, PresenceInfoTooLarge, SocketRouter
from observable_socket_asgi.pubsub.presence import MemoryPresence, check_info
from observable_socket_asgi.testing import TestClient
from tests.helpers import Conversation, request, ws_scope


def lobby(**options: Any) -> SocketRouter:
    router = SocketRouter(**options)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe("lobby", presence={"name": ws.scope["user"]})
        return {}

    @router.route("leave")
    async def leave(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.unsubscribe("lobby")
        return {}

    @router.route("who")
    async def who(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": sorted(m["name"] for m in (await router.presence("lobby")).values())}

    return router


async def test_members_join_leave_and_go_with_their_connection() -> None:
    """Members are listed while subscribed; unsubscribe and disconnect both remove them."""
    router = lobby()
    ada = Conversation(router, ws_scope(user="ada"))
    bob = Conversation(router, ws_scope(user="bob"))
    await ada.connect()
    await bob.connect()
    await ada.ask(request("join"))
    await bob.ask(request("join"))
    assert (await ada.ask(request("who")))["payload"] == ["ada", "bob"]
    await bob.ask(request("leave"))
    assert (await ada.ask(request("who")))["payload"] == ["ada"]
    await bob.ask(request("join"))
    await bob.disconnect()
    assert (await ada.ask(request("who")))["payload"] == ["ada"]
    await ada.disconnect()
    assert await router.presence("lobby") == {}


async def test_join_and_leave_pushes_when_asked_for() -> None:
    """With presence_events, subscribers hear who joins and who leaves."""
    router = lobby(presence_events=True)
    ada = Conversation(router, ws_scope(user="ada"))
    bob = Conversation(router, ws_scope(user="bob"))
    await ada.connect()
    await bob.connect()
    await ada.send(request("join"))
    own = await ada.reply()
    assert own["headers"] == {"presence": "join"} and own["payload"]["info"] == {"name": "ada"}
    assert (await ada.reply())["status"] == 200
    await bob.ask(request("join"))
    joined = await ada.reply()
    assert joined["route"] == "lobby" and joined["payload"]["info"] == {"name": "bob"}
    await bob.disconnect()
    left = await ada.reply()
    assert left["headers"] == {"presence": "leave"}
    assert left["payload"] == joined["payload"]
    await ada.disconnect()


async def test_no_events_by_default() -> None:
    """Without presence_events a join pushes nothing."""
    router = lobby()
    ada = Conversation(router, ws_scope(user="ada"))
    await ada.connect()
    await ada.ask(request("join"))
    assert await ada.nothing()
    await ada.disconnect()


def test_info_must_be_small_json() -> None:
    """Info over the limit is a ValueError naming it; info JSON cannot hold, EncodeError."""
    assert check_info({"a": 1}, 100) == b'{"a":1}'
    with pytest.raises(ValueError, match="presence_max_info_bytes") as raised:
        check_info("x" * 100, 50)
    assert isinstance(raised.value, PresenceInfoTooLarge)
    assert isinstance(raised.value, BadRequest) and raised.value.status == 400
    with pytest.raises(EncodeError):
        check_info({1, 2}, 100)


async def test_too_large_info_escaping_a_handler_answers_400() -> None:
    """A handler that lets the too-large-info error escape answers 400 with the sizes (the
    client's mistake), not a 500."""
    router = SocketRouter(presence_max_info_bytes=16)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe("lobby", presence=payload)
        return {}

    async with TestClient(router) as client:
        too_big = await client.request("join", {"name": "x" * 40})
        assert too_big.status == 400
        assert "over presence_max_info_bytes (16)" in too_big.payload["message"]
        assert (await client.request("join", {"name": "ada"})).status == 200


@pytest.mark.parametrize(("ttl", "size"), [(0, 10), (1.0, 1)])
def test_bad_presence_options_are_refused(ttl: float, size: int) -> None:
    """A non-positive ttl or a tiny info limit raises ValueError."""
    with pytest.raises(ValueError):
        MemoryPresence(ttl, size)
