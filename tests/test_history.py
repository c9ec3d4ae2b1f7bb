"""Topic history without I/O: positions, bounds, expiry and what a resume is told."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi._concurrency import DONE, Continuation
from observable_socket_asgi.options import HistoryOptions
from observable_socket_asgi.pubsub._history import (
    MemoryHistory,
    check_history_options,
    fill,
    parse_since,
    split_push,
    unnumbered,
)
from observable_socket_asgi.pubsub.memory import InMemoryBackplane
from observable_socket_asgi.pubsub.topics import Topics
from observable_socket_asgi.pubsub.transport import MemoryHistoryStore
from tests.helpers import TIMEOUT, Conversation, request


def epochs() -> object:
    counter = itertools.count(1)
    return lambda: f"e{next(counter)}"


def history(size: int = 3, ttl: float = 10.0, max_bytes: int = 10_000) -> MemoryHistory:
    return MemoryHistory(size, ttl, max_bytes, epochs=epochs())  # type: ignore[arg-type]


def publish(h: MemoryHistory, topic: str, n: int, now: float = 0.0) -> tuple[int, str, str]:
    return h.append(topic, split_push(topic, {"n": n}, {"kind": "x"}), now)


def test_template_fills_to_the_push_with_its_position() -> None:
    """The filled template is the push frame with offset and epoch in its headers."""
    template = split_push("room:1", {"text": '"offset":0,"epoch":"'}, {"offset": 9, "a": 1})
    frame = orjson.loads(fill(template, 42, "abc"))
    assert frame["route"] == "room:1"
    assert frame["headers"] == {"a": 1, "offset": 42, "epoch": "abc"}
    assert frame["payload"] == {"text": '"offset":0,"epoch":"'}


@pytest.mark.parametrize("headers", [None, {}, {"a": 1}, {"a": 1, "epoch": "x"}])
def test_template_without_a_position_is_the_plain_push(headers: dict[str, int] | None) -> None:
    """A push whose history is unreachable goes out with the publisher's headers only."""
    frame = orjson.loads(unnumbered(split_push("t", [1], headers)))
    assert frame["headers"] == {k: v for k, v in (headers or {}).items() if k != "epoch"}
    assert frame["payload"] == [1] and frame["route"] == "t"


def test_offsets_increase_by_one_per_topic() -> None:
    """Each topic counts its own publishes from 1, within one epoch."""
    h = history()
    assert [publish(h, "a", i)[0] for i in range(3)] == [1, 2, 3]
    assert publish(h, "b", 0)[:2] == (1, "e2")
    assert h.position("a", 0.0) == (3, "e1")


def test_resume_returns_exactly_the_missed_pushes_in_order() -> None:
    """Since offset 1, a client is given pushes 2 and 3 and told it recovered."""
    h = history()
    frames = [publish(h, "a", i)[2] for i in range(3)]
    got = h.since("a", (1, "e1"), 0.0)
    assert got.recovered and got.offset == 3 and got.epoch == "e1"
    assert got.frames == tuple(frames[1:])
    assert [orjson.loads(f)["headers"]["offset"] for f in got.frames] == [2, 3]


def test_up_to_date_position_recovers_with_nothing_to_replay() -> None:
    """A client that missed nothing is recovered with no frames."""
    h = history()
    publish(h, "a", 1)
    assert h.since("a", (1, "e1"), 0.0).recovered
    assert h.since("a", (1, "e1"), 0.0).frames == ()


@pytest.mark.parametrize(
    ("since", "why"),
    [
        ((0, "e1"), "older than the kept pushes"),
        ((1, "other"), "another epoch"),
        ((99, "e1"), "ahead of the topic"),
    ],
)
def test_unrecoverable_positions_are_reported(since: tuple[int, str], why: str) -> None:
    """A gap the history cannot fill says recovered=False with the current position."""
    h = history(size=3)
    for i in range(5):
        publish(h, "a", i)
    got = h.since("a", since, 0.0)
    assert (got.recovered, got.offset, got.epoch, got.frames) == (False, 5, "e1", ()), why


def test_subscribe_without_position_is_told_the_current_one() -> None:
    """since=None is not a recovery, and reports where the topic is."""
    h = history()
    publish(h, "a", 1)
    got = h.since("a", None, 0.0)
    assert (got.recovered, got.offset, got.epoch) == (False, 1, "e1")


def test_size_and_bytes_bound_each_topic() -> None:
    """A log keeps at most `size` pushes and `max_bytes` characters."""
    h = history(size=3)
    for i in range(10):
        publish(h, "a", i)
    assert h.since("a", (7, "e1"), 0.0).recovered
    assert not h.since("a", (6, "e1"), 0.0).recovered
    one = len(publish(h, "b", 0)[2])
    small = history(size=100, max_bytes=one * 2 + 1)
    for i in range(10):
        publish(small, "a", i)
    assert small.bytes <= one * 2 + 1
    assert len(small.since("a", (8, "e1"), 0.0).frames) == 2
    assert not small.since("a", (7, "e1"), 0.0).recovered


def test_pushes_older_than_ttl_are_not_replayed() -> None:
    """A push kept past the ttl makes the resume unrecoverable rather than partial."""
    h = history(size=10, ttl=10.0)
    publish(h, "a", 1, now=0.0)
    publish(h, "a", 2, now=8.0)
    assert not h.since("a", (0, "e1"), 12.0).recovered
    got = h.since("a", (1, "e1"), 12.0)
    assert got.recovered and len(got.frames) == 1


def test_quiet_topic_is_forgotten_and_starts_a_new_epoch() -> None:
    """No publish for the ttl: the log goes, and the next publish has a new epoch."""
    h = history(ttl=10.0)
    publish(h, "a", 1, now=0.0)
    publish(h, "b", 1, now=5.0)
    assert h.topics == 2
    assert publish(h, "b", 2, now=11.0)[:2] == (2, "e2")
    assert h.topics == 1
    assert publish(h, "a", 2, now=11.0)[:2] == (1, "e3")
    assert not h.since("a", (1, "e1"), 11.0).recovered


def test_topics_are_bounded_least_recently_published_first() -> None:
    """Past max_topics the topic published to longest ago loses its log (and epoch)."""
    h = MemoryHistory(10, 60.0, epochs=epochs(), max_topics=2)  # type: ignore[arg-type]
    publish(h, "a", 1)
    publish(h, "b", 1)
    publish(h, "a", 2)
    publish(h, "c", 1)
    assert h.topics == 2
    assert h.since("a", (2, "e1"), 0.0).recovered
    assert not h.since("b", (1, "e2"), 0.0).recovered


@pytest.mark.parametrize(
    "since",
    [
        {"offset": -1, "epoch": "e"},
        {"offset": "1", "epoch": "e"},
        {"offset": 1},
        [1, "e"],
        3,
        {"offset": True, "epoch": "e"},
    ],
)
def test_bad_since_is_refused_with_what_was_expected(since: object) -> None:
    """A malformed position raises ValueError naming the expected shape."""
    with pytest.raises(ValueError, match="since must be None or"):
        parse_since(since)


def test_since_parses() -> None:
    """A well-formed position is read as (offset, epoch)."""
    assert parse_since({"offset": 3, "epoch": "ab"}) == (3, "ab")
    assert parse_since(None) is None


@pytest.mark.parametrize(
    ("size", "ttl", "max_bytes"), [(-1, 1.0, 1), (1, 0, 1), (1, 1.0, 0), (1.5, 1.0, 1)]
)
def test_bad_options_are_refused(size: object, ttl: object, max_bytes: object) -> None:
    """Invalid history options raise ValueError."""
    with pytest.raises(ValueError):
        check_history_options(size, ttl, max_bytes)  # type: ignore[arg-type]


# Through the router, in memory


def rooms(**options: Any) -> SocketRouter:
    """A router whose `join` subscribes with the client's position and reports the result."""
    router = SocketRouter(**options)

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        try:
            got = await ws.subscribe("t", since=payload)
        except ValueError as exc:
            return {"status": 400, "payload": str(exc)}
        return {"payload": [got.recovered, got.offset, got.epoch]}

    return router


async def test_resume_replays_then_goes_live() -> None:
    """A subscriber resuming from offset 1 gets 2 and 3, its answer, then 4 live."""
    router = rooms(history_size=10)
    first, again = Conversation(router), Conversation(router)
    await first.connect()
    assert (await first.ask(request("join", None)))["payload"][:2] == [False, 0]
    for n in range(3):
        await router.publish("t", n, {"kind": "n"})
    pushes = [await first.reply() for _ in range(3)]
    assert [p["headers"]["offset"] for p in pushes] == [1, 2, 3]
    assert pushes[0]["headers"]["kind"] == "n"
    epoch = pushes[0]["headers"]["epoch"]

    await again.connect()
    await again.send(request("join", {"offset": 1, "epoch": epoch}))
    replayed = [await again.reply() for _ in range(2)]
    assert replayed == pushes[1:]
    assert (await again.reply())["payload"] == [True, 3, epoch]
    await router.publish("t", "live")
    assert (await again.reply())["headers"] == {"offset": 4, "epoch": epoch}
    assert await again.nothing()
    await first.disconnect()
    await again.disconnect()


async def test_history_off_subscribes_without_positions() -> None:
    """Without history a subscribe is not recovered and pushes carry no position."""
    router = rooms()
    conv = Conversation(router)
    await conv.connect()
    assert (await conv.ask(request("join", {"offset": 1, "epoch": "e"})))["payload"] == [
        False,
        None,
        None,
    ]
    await router.publish("t", 1)
    assert (await conv.reply())["headers"] == {}
    await conv.disconnect()


async def test_bad_position_reaches_the_handler_as_value_error() -> None:
    """A malformed `since` raises ValueError in the handler, before subscribing."""
    router = rooms(history_size=10)
    conv = Conversation(router)
    await conv.connect()
    answer = await conv.ask(request("join", {"offset": "x"}))
    assert answer["status"] == 400 and "since must be" in answer["payload"]
    assert router.backplane.subscribers("t") == 0
    await conv.disconnect()


class SlowConnection:
    """Stands for a connection whose socket takes a while: the first send waits."""

    def __init__(self) -> None:
        self.closed = False
        self.closers: list[Callable[[], None]] = []
        self.member_id = "slow"
        self.frames: list[str] = []
        self.gate = asyncio.Event()

    def on_close(self, callback: Callable[[], None]) -> None:
        self.closers.append(callback)

    async def send_frame(self, frame: str) -> None:
        if not self.frames:
            self.frames.append(frame)
            await self.gate.wait()
        else:
            self.frames.append(frame)

    def push_nowait(self, message: dict[str, Any]) -> asyncio.Task[None] | None:
        """What a publish calls (the connection's): the write starts at once, a task if it waits."""
        steps = self.send_frame(message["text"]).__await__()
        yielded = next(steps, DONE)
        if yielded is DONE:
            return None

        async def rest() -> None:
            await Continuation(steps, yielded)

        return asyncio.get_running_loop().create_task(rest())


async def test_pushes_published_during_a_replay_follow_it() -> None:
    """Live pushes arriving while a replay is being sent wait for it: no gap, no reorder."""
    plane = Topics(InMemoryBackplane(), history=HistoryOptions(size=10))
    for n in range(3):
        await plane.publish("t", n)
    assert isinstance(plane.history, MemoryHistoryStore)
    epoch = plane.history.memory.position("t", 0.0)[1]
    conn = SlowConnection()
    subscribing = asyncio.create_task(plane.subscribe(conn, "t", {"offset": 1, "epoch": epoch}))
    while not conn.frames:  # noqa: ASYNC110 (the replay's first send, no event to wait on)
        await asyncio.sleep(0)
    await plane.publish("t", 3)
    await plane.publish("t", 4)
    conn.gate.set()
    result = await asyncio.wait_for(subscribing, TIMEOUT)
    assert (result.recovered, result.offset) == (True, 3)
    await plane.publish("t", 5)
    await asyncio.sleep(0)
    offsets = [orjson.loads(f)["headers"]["offset"] for f in conn.frames]
    assert offsets == [2, 3, 4, 5, 6]
