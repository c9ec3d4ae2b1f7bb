"""History is made by publishes only: subscribers cannot evict it, nor leave Redis keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.pubsub._history import MemoryHistory, split_push
from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane
from tests.helpers import running
from tests.redis_servers import RedisServer, redis_server  # noqa: F401


def rooms_router(**options: Any) -> SocketRouter:
    """`join` subscribes (with an optional `since`) and answers the position; `say` publishes."""
    router = SocketRouter(history_size=100, **options)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        sub = await ws.subscribe(payload["topic"], since=payload.get("since"))
        return {"payload": {"recovered": sub.recovered, "offset": sub.offset, "epoch": sub.epoch}}

    @router.route("say")
    async def say(ws: Any, headers: Any, payload: Any) -> Any:
        await router.publish(payload["topic"], payload["text"])
        return {"payload": None}

    return router


async def ask(ws: Any, route: str, payload: Any, pushes: list[Any] | None = None) -> Any:
    """Send one request and return its answer's payload; pushes before it go to `pushes`."""
    await ws.send(json.dumps({"uuid": route, "route": route, "payload": payload}))
    while True:
        reply = json.loads(await ws.recv(decode=True))
        if reply.get("uuid") == route:
            assert reply["status"] == 200, reply
            return reply["payload"]
        if pushes is not None:
            pushes.append(reply)


async def test_subscribing_to_many_names_does_not_evict_a_live_topic() -> None:
    """A client subscribing to 200 names (history_max_topics=50) leaves the live topic's
    history whole: another client's resume is recovered with what it missed."""
    router = rooms_router(history_max_topics=50, max_topics=1000)
    with running(router) as server:
        async with connect(server.url) as ada, connect(server.url) as bob:
            await ask(ada, "join", {"topic": "live"})
            await ask(bob, "say", {"topic": "live", "text": "one"})
            seen = json.loads(await ada.recv(decode=True))
            position = {"offset": seen["headers"]["offset"], "epoch": seen["headers"]["epoch"]}
            await ada.close()
            await ask(bob, "say", {"topic": "live", "text": "two"})

            async with connect(server.url) as mallory:
                for i in range(200):
                    await ask(mallory, "join", {"topic": f"junk-{i}"})

            missed: list[Any] = []
            async with connect(server.url) as back:
                answer = await ask(back, "join", {"topic": "live", "since": position}, missed)
    assert answer["recovered"] is True and answer["epoch"] == position["epoch"]
    assert [push["payload"] for push in missed] == ["two"]


def test_a_subscribe_keeps_nothing_and_a_resume_from_before_the_first_publish_works() -> None:
    """Reading a position creates no log; a client that subscribed before any publish gets
    every push on resume, while no log can have been lost since."""
    history = MemoryHistory(size=10, ttl=60, max_topics=2)
    first = history.since("t", None, now=100.0)
    assert history.topics == 0 and first.offset == 0 and first.epoch.startswith("-")
    for n in range(3):
        history.append("t", split_push("t", n, None), now=101.0)
    back = history.since("t", (0, first.epoch), now=102.0)
    assert back.recovered and back.offset == 3 and len(back.frames) == 3
    history.append("u", split_push("u", 0, None), now=103.0)
    history.append("v", split_push("v", 0, None), now=104.0)  # "t" pushed out by a publish
    assert not history.since("t", (0, first.epoch), now=105.0).recovered

    idle = MemoryHistory(size=10, ttl=60)
    empty = idle.since("t", None, now=100.0).epoch
    assert idle.since("t", (0, empty), now=159.0).recovered  # nothing was published
    assert not idle.since("t", (0, empty), now=160.0).recovered  # a log may have come and gone


@pytest.mark.redis
async def test_redis_subscribes_leave_no_key(redis_server: RedisServer) -> None:  # noqa: F811
    """On Redis, 100 subscribes to names never published to make no key; a publish does."""
    router = rooms_router(backplane=RedisBackplane(redis_server.url, prefix="hb:"))
    r = redis_server.client()
    try:
        with running(router) as server:
            async with connect(server.url) as mallory:
                for i in range(100):
                    await ask(mallory, "join", {"topic": f"junk-{i}"})
                assert [k async for k in r.scan_iter("hb:h:*")] == []
                await ask(mallory, "say", {"topic": "live", "text": "one"})
                assert sorted([k async for k in r.scan_iter("hb:h:*")]) == [
                    b"hb:h:live:m",
                    b"hb:h:live:s",
                ]
    finally:
        await r.aclose()
