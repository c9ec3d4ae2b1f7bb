"""The portal: an event loop on a thread of its own, driven from synchronous code."""

from __future__ import annotations

import asyncio
import threading

import pytest

from observable_socket_asgi.client._portal import Portal


def test_call_runs_on_the_portal_thread_and_returns_or_raises() -> None:
    """call() runs the coroutine on the portal's loop; its result or exception comes back."""
    portal = Portal()
    try:

        async def where() -> str:
            return threading.current_thread().name

        async def fail() -> None:
            raise KeyError("k")

        assert portal.call(where()) == "observable-socket-portal"
        with pytest.raises(KeyError):
            portal.call(fail())
    finally:
        portal.stop()


def test_stop_cancels_leftover_tasks_and_refuses_later_calls() -> None:
    """stop() cancels what still runs, closes the loop, joins the thread; later calls fail."""
    portal = Portal()
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def start() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    portal.call(start())
    portal.stop()
    portal.stop()  # idempotent
    assert cancelled.is_set() and portal.loop.is_closed()

    async def nothing() -> None:
        pass

    with pytest.raises(RuntimeError, match="stopped"):
        portal.call(nothing())


def test_call_from_the_portal_loop_is_refused() -> None:
    """Calling the portal from its own loop would deadlock: it raises instead."""
    portal = Portal()
    try:

        async def nothing() -> None:
            pass

        async def reenter() -> None:
            portal.call(nothing())

        with pytest.raises(RuntimeError, match="own event loop"):
            portal.call(reenter())
    finally:
        portal.stop()
