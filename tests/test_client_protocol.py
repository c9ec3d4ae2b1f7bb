"""The client's pure correlation: what a frame is, the waiters, the push buffer. No loop runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from observable_socket_asgi.client._correlation import (
    Answer,
    Correlator,
    Dropped,
    Pending,
    Pong,
    PushBuffer,
    Pushed,
    fail_pending,
)
from observable_socket_asgi.envelope import Push, Response
from observable_socket_asgi.errors import ConnectionClosed, ProtocolError


def frame(**fields: object) -> str:
    return orjson.dumps(fields).decode()


def push(n: int) -> Push:
    return Push("topic", {"n": n}, {})


def test_reply_resolves_its_waiter_once() -> None:
    """A reply with a pending uuid is an Answer carrying that request's waiter."""
    protocol: Correlator[str] = Correlator()
    protocol.expect("u1", "waiter-1")
    protocol.expect("u2", "waiter-2")
    incoming = protocol.receive(frame(uuid="u2", status=201, headers={"h": 1}, payload=[1]))
    assert isinstance(incoming, Answer)
    assert incoming.waiter == "waiter-2"
    assert (incoming.response.uuid, incoming.response.status) == ("u2", 201)
    assert incoming.response.headers == {"h": 1} and incoming.response.payload == [1]
    assert protocol.in_flight == 1
    # the same uuid again is no longer pending: a push
    assert isinstance(protocol.receive(frame(uuid="u2", status=200)), Pushed)


def test_pong_answers_a_pending_ping_request() -> None:
    """A PONG whose uuid is a pending request's (request("PING")) is that request's Answer."""
    protocol: Correlator[str] = Correlator()
    protocol.expect("u1", "w")
    incoming = protocol.receive(frame(uuid="u1", route="PONG", status=200, payload=None))
    assert isinstance(incoming, Answer) and incoming.waiter == "w"
    assert (incoming.response.uuid, incoming.response.status) == ("u1", 200)
    assert protocol.in_flight == 0


def test_heartbeat_pong_is_a_pong_and_frees_its_uuid() -> None:
    """A PONG for an ignored (heartbeat) uuid or an unknown one is a Pong, never a push."""
    protocol: Correlator[str] = Correlator()
    protocol.ignore("beat")
    assert isinstance(protocol.receive(frame(uuid="beat", route="PONG")), Pong)
    assert isinstance(protocol.receive(frame(uuid="other", route="PONG")), Pong)
    # the heartbeat's uuid was forgotten with its PONG: a frame reusing it is a push
    assert isinstance(protocol.receive(frame(uuid="beat", route="x")), Pushed)


def test_unknown_uuid_is_a_push_with_lenient_fields() -> None:
    """A frame answering nothing is a push; wrongly typed fields take the defaults."""
    protocol: Correlator[str] = Correlator()
    incoming = protocol.receive(
        frame(uuid="srv-1", route="chat", status="x", headers=[], payload={"a": 1})
    )
    assert isinstance(incoming, Pushed)
    assert incoming.push == Push("chat", {"a": 1}, {}, 200, "srv-1")


def test_forgotten_and_ignored_answers_are_dropped_once() -> None:
    """Late answers to forgotten requests and to sends are dropped, then the uuid is free."""
    protocol: Correlator[str] = Correlator()
    protocol.expect("late", "w")
    assert protocol.forget("late") == "w"
    assert protocol.forget("late") is None
    protocol.ignore(7)
    protocol.ignore("sent", "log/event")
    dropped = protocol.receive(frame(uuid="late"))
    assert isinstance(dropped, Dropped) and (dropped.uuid, dropped.route) == ("late", None)
    dropped = protocol.receive(frame(uuid=7))
    assert isinstance(dropped, Dropped) and (dropped.uuid, dropped.route) == (7, None)
    assert isinstance(protocol.receive(frame(uuid=7)), Pushed)
    # a send()'s answer carries its route and status, for the client to report an error
    dropped = protocol.receive(frame(uuid="sent", status=404, payload={"message": "nope"}))
    assert isinstance(dropped, Dropped) and dropped.route == "log/event"
    assert (dropped.response.status, dropped.response.payload) == (404, {"message": "nope"})


def test_ignored_uuids_are_bounded_oldest_first() -> None:
    """Past `ignored_max` the oldest ignored uuid is forgotten: its answer becomes a push."""
    protocol: Correlator[str] = Correlator(ignored_max=2)
    for uuid in ("a", "b", "c"):
        protocol.ignore(uuid)
    assert isinstance(protocol.receive(frame(uuid="a")), Pushed)
    assert isinstance(protocol.receive(frame(uuid="b")), Dropped)
    assert isinstance(protocol.receive(frame(uuid="c")), Dropped)


def test_take_all_empties_pending_and_drops_their_answers() -> None:
    """On a close every waiter is handed back once and later answers are dropped."""
    protocol: Correlator[str] = Correlator()
    protocol.expect("a", "wa")
    protocol.expect("b", "wb")
    assert sorted(protocol.take_all()) == ["wa", "wb"]
    assert protocol.in_flight == 0 and protocol.take_all() == []
    assert isinstance(protocol.receive(frame(uuid="a", status=200)), Dropped)


def test_integer_uuid_never_answers_a_pending_string_uuid() -> None:
    """Only the client's own string uuids correlate; an int of the same digits is a push."""
    protocol: Correlator[str] = Correlator()
    protocol.expect("1", "w")
    assert isinstance(protocol.receive(frame(uuid=1)), Pushed)


@pytest.mark.parametrize("data", ["not json", "[1, 2]", b"\xff"])
def test_malformed_frames_raise_protocol_error(data: str | bytes) -> None:
    """A frame that is not one JSON object raises ProtocolError for the shell to log."""
    with pytest.raises(ProtocolError):
        Correlator[str]().receive(data)


def test_push_buffer_drop_oldest_counts_and_warns_once_per_episode() -> None:
    """A full drop_oldest buffer keeps the newest; only the first drop of an episode warns."""
    buffer = PushBuffer(2)
    starts = [buffer.add(push(n)) for n in range(5)]
    assert starts == [False, False, True, False, False]
    assert [p.payload for p in buffer] == [{"n": 3}, {"n": 4}]
    assert buffer.dropped == 3
    buffer.pop()
    assert buffer.add(push(5)) is False  # not emptied yet: the same episode
    assert buffer.add(push(6)) is False
    buffer.pop()
    buffer.pop()
    assert len(buffer) == 0
    buffer.add(push(7))
    buffer.add(push(8))
    assert buffer.add(push(9)) is True  # emptied in between: a new episode


def test_push_buffer_drop_newest_keeps_the_first() -> None:
    """A full drop_newest buffer keeps what it has and loses the newcomers."""
    buffer = PushBuffer(2, "drop_newest")
    for n in range(4):
        buffer.add(push(n))
    assert [buffer.pop().payload, buffer.pop().payload] == [{"n": 0}, {"n": 1}]
    assert buffer.dropped == 2
    with pytest.raises(IndexError):
        buffer.pop()


def test_unbounded_push_buffer_never_drops() -> None:
    """With no bound (the test client) nothing is lost."""
    buffer = PushBuffer(None)
    for n in range(3000):
        buffer.add(push(n))
    assert len(buffer) == 3000 and buffer.dropped == 0


@pytest.mark.parametrize(
    ("max_pushes", "overflow", "message"),
    [(0, "drop_oldest", "max_pushes must be at least 1"), (1, "drop_all", "overflow must be")],
)
def test_push_buffer_rejects_bad_settings(max_pushes: int, overflow: str, message: str) -> None:
    """A bound below 1 or an unknown policy is refused with a clear message."""
    with pytest.raises(ValueError, match=message):
        PushBuffer(max_pushes, overflow)  # type: ignore[arg-type]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop that is never run: it only makes the futures the waiters hold."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_close_fails_each_pending_request_saying_whether_it_was_sent(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """fail_pending empties the correlator; each error names its route and whether it left."""
    protocol: Correlator[Pending] = Correlator()
    sent = Pending(loop.create_future(), "a", sent=True)
    unsent = Pending(loop.create_future(), "b")
    protocol.expect("u1", sent)
    protocol.expect("u2", unsent)
    fail_pending(protocol, 1012, "restart")
    assert protocol.in_flight == 0
    raised = [sent.future.exception(), unsent.future.exception()]
    errors = [e for e in raised if isinstance(e, ConnectionClosed)]
    assert len(errors) == 2
    assert [(e.route, e.code, e.reason, e.may_have_reached_server) for e in errors] == [
        ("a", 1012, "restart", True),
        ("b", 1012, "restart", False),
    ]
    # their late answers are dropped, not taken for pushes
    assert isinstance(protocol.receive(frame(uuid="u1", status=200)), Dropped)


def test_a_settled_request_is_left_alone(loop: asyncio.AbstractEventLoop) -> None:
    """A waiter whose caller gave up (cancelled) or was answered is not resolved again."""
    answered = Pending(loop.create_future(), "a")
    answered.answer(Response("u1", 200, {}, 1))
    answered.answer(Response("u1", 500, {}, 2))
    answered.fail(1006, "lost")
    assert answered.future.result().payload == 1
    gone = Pending(loop.create_future(), "b")
    gone.future.cancel()
    gone.answer(Response("u2", 200, {}, 1))
    gone.fail(1006, "lost")
    assert gone.future.cancelled()
