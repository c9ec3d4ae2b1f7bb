"""User callbacks, sync or async, and the tasks nobody awaits, written once for the client.

A callback the user gives (`on_push`, `on_open`, `on_answer`) may be a plain function or a
coroutine function; the client tells them apart by what a call returns, not by inspecting
the function, so a lambda returning a coroutine works too. Its failure is logged, never
raised into the client's reader. Tasks the client starts and does not await (async
callbacks, resubscriptions, a close handshake with a dead peer) are kept in a `TaskSet`, so
the loop cannot collect them mid-flight and `close()` can cancel them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Callback", "TaskSet", "invoke"]

A = TypeVar("A")

#: a user callback: a function or a coroutine function of one argument
Callback = Callable[[A], Awaitable[None] | None]


async def invoke(callback: Callback[A], arg: A) -> None:
    """Call `callback(arg)` and await what it returns, if anything."""
    result = callback(arg)
    if result is not None:
        await result


class TaskSet:
    """The tasks a client started and nobody awaits.

    A callback's failure is logged with the message given to `call`; any other task's
    unhandled failure is logged when it ends. A task is dropped from the set when done, and
    `cancel()` is the cleanup `close()` guarantees.

    Args:
        logger: where a callback's failure is logged.
    """

    __slots__ = ("_logger", "_tasks")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task kept until it is done; a failure it does not handle is logged."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def call(self, callback: Callback[A], arg: A, what: str, *args: object) -> None:
        """Call `callback(arg)` now; a coroutine it returns runs as a task of the set.

        A failure, now or in the task, is logged with `what % args`, never raised.
        """
        try:
            result = callback(arg)
        except Exception:
            self._logger.exception(what, *args)
            return
        if result is not None:
            self.spawn(self._finish(result, what, args))

    async def cancel(self) -> None:
        """Cancel every task but the current one, and wait for them to end."""
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                # nobody awaits it: without this line the error would only surface, if ever,
                # as asyncio's "exception was never retrieved" when the task is collected
                self._logger.error("client task %s failed", task.get_name(), exc_info=error)

    async def _finish(self, result: Awaitable[None], what: str, args: tuple[object, ...]) -> None:
        """Await an async callback's coroutine; its failure is logged, never raised."""
        try:
            await result
        except Exception:
            self._logger.exception(what, *args)
