"""A hypothesis state machine of one connection at a time, driven over Communicator.

Rules: send a well-formed request (fast, slow, timed out, failing, unknown route), send
garbage (not JSON, not an object, bad fields, oversized), PING, wait for answers, disconnect
and reconnect. Invariants: every well-formed request gets exactly one answer with its uuid,
every garbage frame exactly one error, a request cancelled by a disconnect gets none, and no
exception ever escapes the application (nor an orphan task's exception reaches the loop).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from observable_socket_asgi import SocketRouter
from tests.helpers import MS, TIMEOUT, Communicator, request, ws_scope

MAX_BYTES = 512

#: what each well-formed request kind must be answered with
EXPECTED_STATUS = {"echo": 200, "slow": 200, "stuck": 504, "boom": 500, "missing": 404}

GARBAGE = st.one_of(
    st.sampled_from(
        [
            b"\xff\xfe\x00",  # binary, not UTF-8
            "not json",
            "[1, 2, 3]",
            "42",
            "null",
            '{"uuid": [1], "route": "echo"}',
            '{"uuid": 1.5, "route": "echo"}',
            '{"uuid": "x", "route": 5}',
            '{"uuid": "y"}',
            '{"route": "echo", "payload": "' + "x" * (MAX_BYTES * 2) + '"}',
            "x" * (MAX_BYTES * 2),
        ]
    ),
    st.text(max_size=20).filter(lambda text: "route" not in text),
)


MAX_IN_FLIGHT = 8


def make_router(cancelled: set[Any]) -> SocketRouter:
    """Routes for every outcome; `slow` records the uuids whose handler was cancelled."""
    router = SocketRouter(max_message_bytes=MAX_BYTES, max_in_flight=MAX_IN_FLIGHT)

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("slow")
    async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        try:
            await asyncio.sleep(payload["ms"] * MS)
        except asyncio.CancelledError:
            cancelled.add(payload["uuid"])
            raise
        return {"payload": payload}

    @router.route("stuck", options={"timeout": 15 * MS})
    async def stuck(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}

    @router.route("boom")
    async def boom(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        raise RuntimeError("handler failure, never on the wire")

    return router


class OneConnection(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.loop.set_debug(True)
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        self.cancelled: set[Any] = set()
        self.router = make_router(self.cancelled)
        self.serial = 0
        self.comm: Communicator | None = None
        self.connected = False
        self.connect()

    # Plumbing

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def connect(self) -> None:
        async def go() -> None:
            self.comm = Communicator(self.router, ws_scope())
            await self.comm.send_input({"type": "websocket.connect"})
            accepted = await self.comm.receive_output(TIMEOUT)
            assert accepted["type"] == "websocket.accept", accepted

        self.run(go())
        self.connected = True
        # per connection: uuid -> expected status; answers by uuid; garbage frames sent
        self.expected: dict[Any, int] = {}
        self.kinds: dict[Any, str] = {}
        # uuids sent while max_in_flight frames may have been unanswered: such a frame may
        # be read ahead and held, and a client that leaves meanwhile never gets its answer
        self.may_be_held: set[Any] = set()
        self.answers: Counter[Any] = Counter()
        # garbage frames that carry a readable uuid, by uuid (the same one can repeat)
        self.garbage_ids: Counter[Any] = Counter()
        self.garbage_sent = 0
        self.anonymous_errors = 0

    async def collect(self) -> None:
        """Read every frame already written, without waiting (and never cancelling the app)."""
        assert self.comm is not None
        while not self.comm.output_queue.empty():
            message = self.comm.output_queue.get_nowait()
            if message["type"] != "websocket.send":
                raise AssertionError(f"unexpected output {message}")
            reply = orjson.loads(message["text"])
            uuid = reply["uuid"]
            if reply.get("route") == "PONG":
                assert uuid in self.expected and self.expected[uuid] == 200
                self.answers[uuid] += 1
            elif uuid in self.expected:
                assert reply["status"] == self.expected[uuid], reply
                self.answers[uuid] += 1
            elif uuid in self.garbage_ids:
                assert reply["status"] in (400, 413), reply
                self.answers[uuid] += 1
            else:
                assert uuid is None, f"answer for a uuid never sent: {reply}"
                assert reply["status"] in (400, 413), reply
                self.anonymous_errors += 1
            limit = 1 if uuid in self.expected else self.garbage_ids[uuid]
            assert self.answers[uuid] <= limit or uuid is None, f"extra answer for {uuid!r}"
            assert uuid not in self.cancelled, f"answer for cancelled request {uuid!r}"

    def outstanding(self) -> int:
        waiting = sum(1 for uuid in self.expected if self.answers[uuid] == 0)
        garbage_answered = sum(self.answers[uuid] for uuid in self.garbage_ids)
        return waiting + self.garbage_sent - garbage_answered - self.anonymous_errors

    def note_if_held(self, uuid: Any) -> None:
        """Remember `uuid` if the router may be paused when it arrives (counted from the
        answers written so far, so it errs towards "may be held")."""
        self.run(self.collect())
        if self.outstanding() >= MAX_IN_FLIGHT:
            self.may_be_held.add(uuid)

    def send(self, frame: str | bytes) -> None:
        assert self.comm is not None
        event: dict[str, Any] = (
            {"type": "websocket.receive", "bytes": frame}
            if isinstance(frame, bytes)
            else {"type": "websocket.receive", "text": frame}
        )
        self.run(self.comm.send_input(event))

    # Rules

    @precondition(lambda self: self.connected)
    @rule(kind=st.sampled_from(sorted(EXPECTED_STATUS)), ms=st.integers(0, 30))
    def send_request(self, kind: str, ms: int) -> None:
        self.serial += 1
        uuid: Any = self.serial if self.serial % 2 else f"req-{self.serial}"
        self.expected[uuid] = EXPECTED_STATUS[kind]
        self.kinds[uuid] = kind
        self.note_if_held(uuid)
        payload = {"uuid": uuid, "ms": ms}
        self.send(request(kind, payload, uuid=uuid))

    @precondition(lambda self: self.connected)
    @rule(frame=GARBAGE)
    def send_garbage(self, frame: str | bytes) -> None:
        if isinstance(frame, str) and frame.startswith('{"uuid": "'):
            self.garbage_ids[frame.split('"')[3]] += 1
        self.garbage_sent += 1
        self.send(frame)

    @precondition(lambda self: self.connected)
    @rule()
    def ping(self) -> None:
        self.serial += 1
        uuid = f"ping-{self.serial}"
        self.expected[uuid] = 200
        self.kinds[uuid] = "PING"
        self.note_if_held(uuid)
        self.send(request("PING", {}, uuid=uuid, headers={"token": "abc"}))

    @precondition(lambda self: self.connected)
    @rule()
    def settle(self) -> None:
        """Wait (bounded) until everything sent so far is answered, exactly once."""

        async def go() -> None:
            deadline = time.monotonic() + TIMEOUT
            while True:
                await self.collect()
                if self.outstanding() == 0:
                    return
                assert time.monotonic() < deadline, f"{self.outstanding()} frames unanswered"
                await asyncio.sleep(2 * MS)

        self.run(go())
        assert all(self.answers[uuid] == 1 for uuid in self.expected)

    @precondition(lambda self: self.connected)
    @rule()
    def disconnect(self) -> None:
        """Leave mid-flight: what is still running is cancelled and never answered."""
        assert self.comm is not None
        comm = self.comm

        async def go() -> None:
            await comm.send_input({"type": "websocket.disconnect", "code": 1001})
            await comm.wait(TIMEOUT)  # re-raises anything that escaped the app
            await self.collect()

        self.run(go())
        self.connected = False
        for uuid in self.expected:
            assert self.answers[uuid] <= 1
            if self.answers[uuid] == 0:
                # only a request still running, or a frame read ahead and held while
                # max_in_flight were running, can go unanswered; PING, garbage and fast
                # requests are otherwise answered before the disconnect is even read
                kind = self.kinds[uuid]
                assert kind in ("slow", "stuck", "boom") or uuid in self.may_be_held, (uuid, kind)
                if kind == "slow":
                    assert uuid in self.cancelled, f"{uuid!r} neither answered nor cancelled"
        assert not (set(self.answers) & self.cancelled)
        assert len(self.router.connections) == 0

    @precondition(lambda self: not self.connected)
    @rule()
    def reconnect(self) -> None:
        self.connect()

    # Invariants

    @invariant()
    def app_alive_and_quiet(self) -> None:
        if self.connected and self.comm is not None and self.comm.future.done():
            self.comm.future.result()  # raises what escaped
            raise AssertionError("the app returned while the client was connected")
        assert not self.loop_errors, self.loop_errors

    def teardown(self) -> None:
        try:
            if self.connected:
                self.disconnect()
            self.run(asyncio.sleep(0))
            assert not self.loop_errors, self.loop_errors
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            assert pending == [], pending
        finally:
            self.loop.close()


OneConnection.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOneConnection = OneConnection.TestCase
