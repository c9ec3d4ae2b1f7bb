"""The idle clocks (`server/_idle.py`): one timer for many deadlines, driven by a fake loop."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from typing import Any

from observable_socket_asgi.server._idle import IdleClocks, idle_clocks


class FakeHandle:
    def __init__(self, when: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """A loop's clock and timers, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.now_before = 0.0
        self.handles: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> FakeHandle:
        handle = FakeHandle(when, callback, args)
        self.handles.append(handle)
        return handle

    def armed(self) -> list[FakeHandle]:
        return [handle for handle in self.handles if not handle.cancelled]

    def advance(self, to: float) -> None:
        """Run every live timer due by `to`, in order, as the loop would."""
        self.now_before = self.now
        while True:
            due = [h for h in self.armed() if h.when <= to]
            if not due:
                self.now = to
                return
            handle = min(due, key=lambda h: h.when)
            handle.cancelled = True  # run once
            self.now = max(self.now_before, handle.when)
            handle.callback(*handle.args)


class Conn:
    """A connection that asks to be watched again until its deadline is reached."""

    def __init__(self, clocks: IdleClocks, loop: FakeLoop, idle_at: float) -> None:
        self.clocks = clocks
        self.loop = loop
        self.idle_at = idle_at
        self.asked: list[float] = []
        self.closed_at: float | None = None
        self.key: int | None = None

    def idle_due(self) -> None:
        self.asked.append(self.loop.now)
        if self.loop.now >= self.idle_at:
            self.closed_at = self.loop.now
        else:
            self.key = self.clocks.watch(self, self.idle_at, self.loop)  # type: ignore[arg-type]


def test_one_timer_serves_many_deadlines() -> None:
    """Connections due within one step share a bucket and the loop holds a single timer."""
    loop = FakeLoop()
    clocks = IdleClocks(8.0)  # steps of 1 s
    conns = [Conn(clocks, loop, 10.0) for _ in range(50)]
    for conn in conns:
        conn.key = clocks.watch(conn, 10.0, loop)  # type: ignore[arg-type]
    assert len(loop.armed()) == 1
    assert len(clocks) == 50
    loop.advance(10.0)
    assert all(conn.closed_at == 10.0 for conn in conns)
    assert len(clocks) == 0


def test_closed_within_two_steps_of_the_deadline() -> None:
    """A deadline between steps is met at the next step; one asked early waits one more."""
    loop = FakeLoop()
    clocks = IdleClocks(8.0)
    late = Conn(clocks, loop, 10.3)
    late.key = clocks.watch(late, 10.3, loop)  # type: ignore[arg-type]
    loop.advance(20.0)
    assert late.closed_at == 11.0
    early = Conn(clocks, loop, 31.5)
    early.key = clocks.watch(early, 30.0, loop)  # type: ignore[arg-type]  # asked too early
    loop.advance(40.0)
    assert early.asked == [30.0, 32.0]
    assert early.closed_at is not None and early.closed_at - 31.5 <= 2 * 1.0


def test_a_rewatch_into_the_due_bucket_is_not_asked_again_at_once() -> None:
    """A connection watched again during a firing for a deadline already due goes one step on,
    instead of the timer firing again and again at the same time."""
    loop = FakeLoop()
    clocks = IdleClocks(8.0)
    conn = Conn(clocks, loop, 5.5)
    conn.key = clocks.watch(conn, 5.0, loop)  # type: ignore[arg-type]
    loop.now = 5.0
    handle = loop.armed()[0]
    handle.cancelled = True
    handle.callback(*handle.args)  # fires at 5.0; the conn asks for 5.5, in bucket 6
    assert conn.asked == [5.0]
    assert [h.when for h in loop.armed()] == [6.0]


def test_forgotten_connections_are_never_asked() -> None:
    """A forgotten connection is never asked; a timer that finds nothing due arms no other,
    and none is cancelled: a connection that comes and goes costs no timer of its own."""
    loop = FakeLoop()
    clocks = IdleClocks(8.0)
    first, second = Conn(clocks, loop, 10.0), Conn(clocks, loop, 20.0)
    first.key = clocks.watch(first, 10.0, loop)  # type: ignore[arg-type]
    second.key = clocks.watch(second, 20.0, loop)  # type: ignore[arg-type]
    assert first.key is not None and second.key is not None
    clocks.forget(first, first.key)
    clocks.forget(second, second.key)
    assert len(clocks) == 0
    for _ in range(100):  # connections that come and go within one step share its timer
        passing = Conn(clocks, loop, 10.0)
        clocks.forget(passing, clocks.watch(passing, 10.0, loop))  # type: ignore[arg-type]
    assert len(loop.handles) == 1
    loop.advance(30.0)
    assert first.asked == [] and second.asked == []
    assert loop.armed() == []


def test_an_earlier_deadline_rearms_the_timer() -> None:
    """A deadline before the one the timer waits for moves the timer forward."""
    loop = FakeLoop()
    clocks = IdleClocks(8.0)
    later, sooner = Conn(clocks, loop, 20.0), Conn(clocks, loop, 5.0)
    later.key = clocks.watch(later, 20.0, loop)  # type: ignore[arg-type]
    sooner.key = clocks.watch(sooner, 5.0, loop)  # type: ignore[arg-type]
    assert sorted(h.when for h in loop.armed()) == [5.0, 20.0]
    loop.advance(5.0)
    assert sooner.closed_at == 5.0 and later.asked == []
    assert [h.when for h in loop.armed()] == [20.0]  # the first timer, not a second one
    loop.advance(20.0)
    assert later.closed_at == 20.0
    assert loop.armed() == []


def test_clocks_are_per_loop_and_timeout_and_go_with_the_loop() -> None:
    """One clocks object per loop and timeout; a loop that is gone takes its clocks along,
    even with a timer still armed."""
    loop = asyncio.new_event_loop()
    try:
        clocks = idle_clocks(loop, 1.0)
        assert idle_clocks(loop, 1.0) is clocks
        assert idle_clocks(loop, 2.0) is not clocks
        conn = Conn(clocks, FakeLoop(), 100.0)
        clocks.forget(conn, clocks.watch(conn, loop.time() + 1.0, loop))
    finally:
        loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
