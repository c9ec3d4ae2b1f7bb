"""The observer interface: bounded labels, the failure sink, and fan-out to several observers."""

from __future__ import annotations

import asyncio
from typing import Any

from observable_socket_asgi.observe import _observe
from observable_socket_asgi.observe._observe import Fanout, Observer, close_code_label, note_failure


def test_close_code_labels_are_bounded() -> None:
    """Standard codes keep their number; any other code a client sends is 'other'."""
    assert close_code_label(1000) == "1000"
    assert close_code_label(1013) == "1013"
    assert close_code_label(None) == "none"
    labels = {close_code_label(code) for code in range(0, 70_000)}
    assert labels == {str(code) for code in range(1000, 1016)} | {"other"}


def test_fixed_route_labels_cannot_be_registered_names_of_the_heartbeat() -> None:
    """The fixed labels are distinct, and PING is the reserved heartbeat route itself."""
    from observable_socket_asgi.envelope import PING

    assert len({_observe.UNKNOWN, _observe.MALFORMED, _observe.PING}) == 3
    assert _observe.PING == PING


def test_note_failure_without_sink_does_nothing() -> None:
    """With nothing watching, a handler failure goes nowhere (and costs one lookup)."""
    note_failure(RuntimeError("ignored"))


def test_failure_sink_is_per_context() -> None:
    """A sink set in one request's context is not seen by a request in another."""
    seen: list[str] = []

    async def request(name: str, fail: bool) -> None:
        token = _observe.set_failure_sink(lambda exc: seen.append(f"{name}:{exc}"))
        try:
            await asyncio.sleep(0)
            if fail:
                note_failure(ValueError("boom"))
        finally:
            _observe.reset_failure_sink(token)

    async def main() -> None:
        await asyncio.gather(request("a", False), request("b", True))
        note_failure(ValueError("outside"))

    asyncio.run(main())
    assert seen == ["b:boom"]


class Recorder(Observer):
    def __init__(self, name: str, log: list[Any]) -> None:
        self.name, self.log = name, log

    def request_started(self, route: str, headers: Any, started: float) -> Any:
        self.log.append((self.name, "start", route))
        return self.name + "-token"

    def request_finished(self, token: Any, route: str, status: int | None) -> None:
        self.log.append((self.name, "finish", token, status))

    def connection_closed(self, code: int | None) -> None:
        self.log.append((self.name, "closed", code))


def test_fanout_calls_each_and_finishes_in_reverse() -> None:
    """Every observer hears every event; requests finish in reverse start order with their
    own tokens, so a context attached last is detached first."""
    log: list[Any] = []
    both = Fanout([Recorder("m", log), Recorder("t", log)])
    token = both.request_started("r", {}, 0.0)
    both.request_finished(token, "r", 200)
    both.connection_closed(1000)
    assert log == [
        ("m", "start", "r"),
        ("t", "start", "r"),
        ("t", "finish", "t-token", 200),
        ("m", "finish", "m-token", 200),
        ("m", "closed", 1000),
        ("t", "closed", 1000),
    ]


def test_base_observer_is_a_no_op() -> None:
    """The base class accepts every event; request_started hands back the start time."""
    obs = Observer()
    assert obs.request_started("r", {}, 1.5) == 1.5
    obs.request_finished(1.5, "r", 200)
    obs.answered("r", 404, 0.0)
    obs.connection_accepted()
    obs.connection_refused("origin")
    obs.connection_closed(1000)
    obs.push_sent()
    obs.pushes_dropped(2)
    obs.queued_push_bytes(10)
    obs.slow_consumer_closed()
    obs.backplane_connected(False)
    obs.backplane_dropped()
    obs.backplane_published(0.1)
    obs.shutdown()


def test_fanout_forwards_every_event() -> None:
    """Each event method of a Fanout reaches every observer it holds."""
    calls: list[list[str]] = [[], []]

    def recorder(log: list[str]) -> Observer:
        class Each(Observer):
            pass

        obs = Each()
        for name in dir(Observer):
            if not name.startswith("_") and name not in ("request_started", "request_finished"):
                setattr(obs, name, lambda *args, name=name: log.append(name))
        return obs

    both = Fanout([recorder(calls[0]), recorder(calls[1])])
    both.connection_accepted()
    both.connection_refused("origin")
    both.connection_closed(1000)
    both.answered("r", 200, 0.0)
    both.push_sent()
    both.pushes_dropped(1)
    both.queued_push_bytes(1)
    both.slow_consumer_closed()
    both.backplane_connected(True)
    both.backplane_dropped()
    both.backplane_published(0.1)
    both.shutdown()
    expected = [
        "connection_accepted", "connection_refused", "connection_closed", "answered",
        "push_sent", "pushes_dropped", "queued_push_bytes", "slow_consumer_closed",
        "backplane_connected", "backplane_dropped", "backplane_published", "shutdown",
    ]  # fmt: skip
    assert calls == [expected, expected]
