"""The per-connection rules, with plain calls and a fake clock: no event loop, no sleeping."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi._protocol import Protocol, PushAction, message_size
from observable_socket_asgi._route import Route
from observable_socket_asgi.envelope import Envelope
from observable_socket_asgi.options import Settings


async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    return {"payload": payload}


def protocol(now: float = 0.0, **options: Any) -> Protocol:
    """A protocol for a router with an `echo` route and `options`, opened at `now`."""
    router = SocketRouter(**options)
    router.add_route("echo", echo)
    router.add_route("slow", echo, {"rate_limit": (1, 10.0)})
    return Protocol(router.settings, router.routes, now)


def frame(route: str = "echo", uuid: str | int = "u", payload: Any = None) -> str:
    return orjson.dumps({"uuid": uuid, "route": route, "headers": {}, "payload": payload}).decode()


def reply(decision: tuple[Route, Envelope] | str) -> dict[str, Any]:
    """The reply frame a decision answers with; fails if the frame was dispatched instead."""
    assert isinstance(decision, str), f"expected a reply, got a dispatch: {decision!r}"
    result: dict[str, Any] = orjson.loads(decision)
    return result


def dispatched(decision: tuple[Route, Envelope] | str) -> tuple[Route, Envelope]:
    assert not isinstance(decision, str), f"expected a dispatch, got {decision!r}"
    return decision


# Frames


def test_a_good_frame_is_dispatched_to_its_route() -> None:
    """A well-formed request for a registered route comes back as (route, request)."""
    proto = protocol()
    route, request = dispatched(proto.frame_read(frame(payload=[1, 2]), 1.0))
    assert route.name == "echo"
    assert (request.uuid, request.payload) == ("u", [1, 2])


@pytest.mark.parametrize(
    ("data", "status", "uuid"),
    [
        ("not json", 400, None),
        ('{"uuid": 1}', 400, 1),
        (frame("nowhere", uuid=5), 404, 5),
        (frame(payload="x" * 200, uuid=9), 413, 9),
    ],
)
def test_bad_frames_are_answered_at_once(data: str, status: int, uuid: Any) -> None:
    """Malformed (400), unroutable (404) and oversized (413) frames get an error reply."""
    answer = reply(protocol(max_message_bytes=64).frame_read(data, 0.0))
    assert (answer["status"], answer["uuid"]) == (status, uuid)
    assert isinstance(answer["payload"]["message"], str)


def test_ping_is_answered_with_pong_unless_heartbeat_is_off() -> None:
    """PING gets PONG with the same uuid; without heartbeat it is an unknown route (404)."""
    pong = reply(protocol().frame_read(frame("PING", uuid="p"), 0.0))
    assert (pong["route"], pong["uuid"], pong["status"]) == ("PONG", "p", 200)
    assert reply(protocol(heartbeat=False).frame_read(frame("PING"), 0.0))["status"] == 404


# Token buckets


def test_rate_limit_allows_a_burst_then_answers_429() -> None:
    """`rate_limit=(2, 1.0)`: two requests at once pass, the third is 429 with its uuid."""
    proto = protocol(rate_limit=(2, 1.0))
    dispatched(proto.frame_read(frame(uuid=1), 0.0))
    dispatched(proto.frame_read(frame(uuid=2), 0.0))
    over = reply(proto.frame_read(frame(uuid=3), 0.0))
    assert (over["status"], over["uuid"]) == (429, 3)


def test_rate_limit_bucket_refills_with_time() -> None:
    """Tokens come back at `messages / per_seconds` (here one per 0.5 s), capped at the burst."""
    proto = protocol(rate_limit=(2, 1.0))
    for _ in range(2):
        dispatched(proto.frame_read(frame(), 0.0))
    assert reply(proto.frame_read(frame(), 0.4))["status"] == 429  # 0.8 of a token
    dispatched(proto.frame_read(frame(), 0.5))  # 1.0 token: one more request
    assert reply(proto.frame_read(frame(), 0.5))["status"] == 429
    # a long pause refills to the burst size and no further
    dispatched(proto.frame_read(frame(), 100.0))
    dispatched(proto.frame_read(frame(), 100.0))
    assert reply(proto.frame_read(frame(), 100.0))["status"] == 429


def test_ping_is_never_rate_limited() -> None:
    """Heartbeats do not spend tokens, even with the bucket empty."""
    proto = protocol(rate_limit=(1, 60.0))
    dispatched(proto.frame_read(frame(), 0.0))
    for _ in range(5):
        assert reply(proto.frame_read(frame("PING"), 0.0))["route"] == "PONG"
    assert reply(proto.frame_read(frame(), 0.0))["status"] == 429


def test_a_route_rate_limit_has_its_own_bucket() -> None:
    """A route's own `rate_limit` counts apart from the connection's bucket, and refills."""
    proto = protocol(rate_limit=(100, 1.0))
    dispatched(proto.frame_read(frame("slow"), 0.0))
    assert reply(proto.frame_read(frame("slow"), 0.0))["status"] == 429
    dispatched(proto.frame_read(frame("echo"), 0.0))
    dispatched(proto.frame_read(frame("slow"), 10.0))


# In flight


def test_in_flight_counts_every_frame_until_its_reply_is_sent() -> None:
    """Replies, errors and dispatches all count; at max_in_flight the shell stops reading."""
    proto = protocol(max_in_flight=2)
    assert not proto.paused()
    dispatched(proto.frame_read(frame(), 0.0))
    assert not proto.paused()
    reply(proto.frame_read("junk", 0.0))
    assert proto.in_flight == 2 and proto.paused()
    proto.reply_sent()
    assert proto.in_flight == 1 and not proto.paused()


# Pushes


def busy(proto: Protocol, nbytes: int = 10) -> None:
    """Make the writer busy with a frame of `nbytes` (a push the server has not yet taken)."""
    proto.write_started(nbytes)


def test_push_is_sent_while_under_the_bound() -> None:
    """An idle writer always takes a push; a busy one queues up to max_queued_pushes."""
    proto = protocol(max_queued_pushes=2)
    assert not proto.writing  # an idle writer: the shell writes the push, nothing is asked
    busy(proto)
    for n in range(2):
        assert proto.push(f"p{n}") == (PushAction.QUEUED, [])
    assert proto.queued_pushes == 2
    assert proto.write_done(10, False) == ("p0", False)  # one left the queue for the writer
    assert proto.push("p2") == (PushAction.QUEUED, [])


def test_slow_consumer_close_policy() -> None:
    """Past the bound with `slow_consumer="close"`: close, and the queued pushes are dropped
    (replies stay queued, in order)."""
    proto = protocol(max_queued_pushes=2)
    busy(proto)
    proto.push("p0")
    proto.queue_reply("r0")
    proto.push("p1")
    action, dropped = proto.push("p2")
    assert (action, dropped) == (PushAction.CLOSE, ["p0", "p1"])
    assert proto.queued_pushes == 0
    assert proto.out is not None and list(proto.out) == [("r0", True)]
    assert proto.buffered == 10 + len("r0")


def test_slow_consumer_drop_oldest_policy() -> None:
    """With `drop_oldest` the oldest push makes room: the count stays at the bound."""
    proto = protocol(max_queued_pushes=2, slow_consumer="drop_oldest")
    busy(proto)
    proto.push("p0")
    proto.push("p1")
    assert proto.push("p2") == (PushAction.DROPPED_OLDEST, ["p0"])
    assert proto.queued_pushes == 2
    assert proto.push("p3") == (PushAction.DROPPED_OLDEST, ["p1"])
    assert proto.out is not None and [frame for frame, _ in proto.out] == ["p2", "p3"]


# Idle


def test_idle_timeout_counts_from_the_last_frame() -> None:
    """Any frame (PING included) restarts the idle clock; a silent connection is idle."""
    proto = protocol(now=100.0, idle_timeout=30.0)
    assert proto.idle_wait(110.0) == pytest.approx(20.0)
    reply(proto.frame_read(frame("PING"), 125.0))
    assert proto.idle_wait(130.0) == pytest.approx(25.0)
    assert proto.idle_wait(154.9) == pytest.approx(0.1)
    assert proto.idle_wait(155.0) is None


def test_settings_default_to_the_router_defaults() -> None:
    """A bare Settings() is what SocketRouter() builds, so the two cannot drift apart."""
    assert Settings() == SocketRouter().settings


# Every frame that makes the server work counts against the rate limit


def test_malformed_frames_and_unknown_routes_spend_tokens_but_ping_does_not() -> None:
    """Bad JSON and unknown routes draw on the connection's bucket (429 with the uuid when
    it can be read); PING never does."""
    proto = protocol(rate_limit=(2, 10.0))
    assert reply(proto.frame_read('{"uuid":"a","route":', 0.0))["status"] == 400
    assert reply(proto.frame_read(frame("nowhere", uuid="b"), 0.0))["status"] == 404
    for _ in range(5):
        assert reply(proto.frame_read(frame("PING", uuid="p"), 0.0))["route"] == "PONG"
    over = reply(proto.frame_read('{"uuid":"c","route":', 0.0))
    assert (over["status"], over["uuid"]) == (429, "c")
    assert reply(proto.frame_read(frame("nowhere", uuid="d"), 0.0))["status"] == 429
    assert reply(proto.frame_read(frame(uuid="e"), 0.0))["status"] == 429


def test_a_client_that_keeps_sending_past_its_limit_becomes_abusive() -> None:
    """As many 429s again as the bucket holds (at least 10), within its window, mark the
    connection abusive (the shell closes it 1008); refusals spread over time do not."""
    proto = protocol(rate_limit=(12, 30.0))
    for n in range(12):
        dispatched(proto.frame_read(frame(uuid=n), 0.0))
    for n in range(12):
        assert reply(proto.frame_read(frame(uuid=n), 0.0))["status"] == 429
        assert not proto.abusive
    reply(proto.frame_read(frame(uuid="one more"), 0.0))
    assert proto.abusive

    patient = protocol(rate_limit=(3, 30.0))
    now = 0.0
    refused = 0
    for _ in range(100):  # one every 6 s, over the 1 per 10 s: some 429s, never abusive
        decision = patient.frame_read(frame(), now)
        refused += isinstance(decision, str)
        now += 6.0
    assert refused > 0 and not patient.abusive


def test_a_route_bucket_refusals_count_towards_abuse_too() -> None:
    """A route's own bucket refusing also counts, with at least 10 refusals tolerated per
    window: retrying a route limited to one call per 10 s a few times is not abuse."""
    proto = protocol()
    dispatched(proto.frame_read(frame("slow"), 0.0))
    for _ in range(10):
        assert reply(proto.frame_read(frame("slow"), 0.0))["status"] == 429
        assert not proto.abusive
    reply(proto.frame_read(frame("slow"), 0.0))
    assert proto.abusive


# The byte budget


def test_reading_pauses_at_the_byte_budget_as_at_max_in_flight() -> None:
    """Bytes held (requests, frames not yet taken by the server) pause reading at
    max_buffered_bytes; releasing them resumes it."""
    proto = protocol(max_buffered_bytes=4096)
    assert proto.max_buffered_bytes == 4096
    assert not proto.paused()
    data = frame(payload="x" * 3900)
    dispatched(proto.frame_read(data, 0.0))  # a request's bytes are held until it is done
    assert proto.buffered == len(data) and not proto.paused()
    proto.write_started(4096 - len(data))
    assert proto.paused()
    proto.request_done(len(data))
    assert proto.buffered == 4096 - len(data) and not proto.paused()


def test_read_ahead_is_bounded_by_count_and_bytes() -> None:
    """While paused, at most max_in_flight frames are held unparsed, within the budget,
    and given back in order."""
    proto = protocol(max_in_flight=2, max_buffered_bytes=2048)
    first = {"type": "websocket.receive", "text": "a" * 10}
    second = {"type": "websocket.receive", "bytes": b"b" * 20}
    assert proto.may_read_ahead()
    proto.read_ahead(first, 1.0)
    assert proto.may_read_ahead() and proto.last_seen == 1.0
    proto.read_ahead(second, 2.0)
    assert not proto.may_read_ahead() and proto.buffered == 30
    assert proto.next_held() is first and proto.buffered == 20
    big = protocol(max_in_flight=4, max_buffered_bytes=2048)
    big.read_ahead({"type": "websocket.receive", "text": "c" * 2048}, 0.0)
    assert not big.may_read_ahead()


def test_a_push_past_the_byte_budget_meets_the_slow_consumer_policy() -> None:
    """Behind a busy writer a push that would take the bytes held past the budget is a
    slow consumer, however few pushes are queued; with an idle writer it is sent."""
    proto = protocol(max_buffered_bytes=100_000)
    proto.write_started(20_000)
    proto.queue_reply("r" * 40_000)
    assert proto.push("p" * 40_000)[0] is PushAction.QUEUED
    assert proto.push("p" * 1)[0] is PushAction.CLOSE
    dropping = protocol(max_buffered_bytes=100_000, slow_consumer="drop_oldest")
    dropping.write_started(70_000)
    dropping.push("o" * 20_000)
    assert dropping.push("n" * 20_000) == (PushAction.DROPPED_OLDEST, ["o" * 20_000])


# The writer's queue: the protocol owns it, the shell drains it


def test_the_writer_drains_the_queue_in_order_and_frees_each_slot() -> None:
    """Frames queued behind a busy writer come back in order from write_done(), each
    reply freeing its slot once taken; the writer is free when the queue is empty."""
    proto = protocol()
    proto.frame_read(frame(), 0.0)
    proto.frame_read(frame(), 0.0)
    assert proto.in_flight == 2
    proto.write_started(5)
    proto.queue_reply("reply")
    proto.push("push!")
    assert proto.buffered > 0 and proto.queued_pushes == 1
    assert proto.write_done(5, True) == ("reply", True)
    assert proto.in_flight == 1 and proto.writing
    assert proto.write_done(5, True) == ("push!", False)
    assert proto.in_flight == 0 and proto.queued_pushes == 0
    assert proto.write_done(5, False) is None
    assert not proto.writing
    assert proto.buffered == len(frame()) * 2  # the requests' bytes, until request_done()


def test_a_stopped_writer_leaves_its_queue_for_the_next() -> None:
    """A write that fails or is cancelled frees its bytes and the writer; what waits stays
    queued, and take_queued() hands it out no longer held."""
    proto = protocol()
    proto.write_started(7)
    proto.push("later")
    proto.write_stopped(7)
    assert not proto.writing and proto.buffered == len("later")
    assert proto.take_queued() == ("later", False)
    assert proto.buffered == 0 and proto.queued_pushes == 0
    assert proto.take_queued() is None


def test_dropping_the_queue_frees_every_slot_and_byte() -> None:
    """At the end, queued replies free their slots, pushes are returned, read-ahead frames
    are let go: nothing stays counted."""
    proto = protocol()
    proto.frame_read("junk", 0.0)
    proto.write_started(3)
    proto.queue_reply("r")
    proto.push("p")
    proto.read_ahead({"type": "websocket.receive", "text": "held"}, 0.0)
    proto.write_stopped(3)
    assert proto.drop_queue() == (1, ["p"])
    assert (proto.in_flight, proto.buffered, proto.queued_pushes) == (0, 0, 0)
    assert proto.next_held() is None


def test_message_size_counts_text_or_bytes() -> None:
    """The one measure of a received frame: its text, else its bytes, else nothing."""
    assert message_size({"type": "websocket.receive", "text": "abc"}) == 3
    assert message_size({"type": "websocket.receive", "bytes": b"ab"}) == 2
    assert message_size({"type": "websocket.receive"}) == 0


def test_new_limits_are_validated() -> None:
    """The byte budget, topic limits, handshake rate and Retry-After refuse nonsense."""
    cases: tuple[tuple[str, Any], ...] = (
        ("max_buffered_bytes", 10),
        ("max_topics", 0),
        ("max_topic_bytes", 0),
        ("retry_after", 0),
        ("handshake_rate", (0, 1.0)),
    )
    for name, bad in cases:
        with pytest.raises(ValueError, match=name):
            SocketRouter(**{name: bad})
