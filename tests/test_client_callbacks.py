"""User callbacks, sync or async, and the task set the client cancels on close: no socket."""

from __future__ import annotations

import asyncio
import logging

import pytest

from observable_socket_asgi.client._callbacks import TaskSet, invoke
from tests.helpers import wait_until

LOGGER = "tests.callbacks"


async def test_a_sync_callback_runs_at_once_and_its_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A plain function is called inline; what it raises is logged with its traceback."""
    tasks = TaskSet(logging.getLogger(LOGGER))
    seen: list[int] = []
    tasks.call(seen.append, 1, "never logged")
    assert seen == [1] and len(tasks) == 0

    def boom(n: int) -> None:
        raise ValueError(n)

    tasks.call(boom, 7, "callback failed for %r", "route")
    [record] = caplog.records
    assert record.getMessage() == "callback failed for 'route'"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_an_async_callback_runs_as_a_kept_task(caplog: pytest.LogCaptureFixture) -> None:
    """A coroutine function runs as a task of the set until done; its failure is logged too."""
    tasks = TaskSet(logging.getLogger(LOGGER))
    release = asyncio.Event()
    seen: list[int] = []

    async def later(n: int) -> None:
        await release.wait()
        seen.append(n)

    async def boom(n: int) -> None:
        await release.wait()
        raise ValueError(n)

    tasks.call(later, 1, "never logged")
    tasks.call(boom, 2, "async callback failed")
    assert seen == [] and len(tasks) == 2
    release.set()
    await wait_until(lambda: len(tasks) == 0, what="both callbacks to end")
    assert seen == [1]
    [record] = caplog.records
    assert record.getMessage() == "async callback failed"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_cancel_ends_every_task_but_the_calling_one() -> None:
    """cancel() from inside a task of the set cancels the others and returns."""
    tasks = TaskSet(logging.getLogger(LOGGER))
    forever = tasks.spawn(asyncio.Event().wait())

    async def closer() -> str:
        await tasks.cancel()
        return "done"

    closing = tasks.spawn(closer())
    assert await closing == "done"
    assert forever.cancelled()
    assert len(tasks) == 0


async def test_invoke_awaits_what_an_async_callback_returns() -> None:
    """invoke() calls a plain function and awaits a coroutine function alike."""
    seen: list[str] = []

    async def note(text: str) -> None:
        await asyncio.sleep(0)
        seen.append(text)

    await invoke(seen.append, "sync")
    await invoke(note, "async")
    assert seen == ["sync", "async"]


async def test_a_spawned_task_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Nobody awaits a spawned task: its unhandled failure is logged when it ends."""
    tasks = TaskSet(logging.getLogger(LOGGER))

    async def boom() -> None:
        raise ValueError("lost")

    tasks.spawn(boom())
    await wait_until(lambda: len(tasks) == 0, what="the task to end")
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.getMessage().endswith(" failed")
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
