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

    Each task logs its own failure (through `call`, or its coroutine's own handling) and is
    dropped from the set when done; `cancel()` is the cleanup `close()` guarantees.

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
        """Run `coro` as a task kept until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
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

    async def _finish(self, result: Awaitable[None], what: str, args: tuple[object, ...]) -> None:
        """Await an async callback's coroutine; its failure is logged, never raised."""
        try:
            await result
        except Exception:
            self._logger.exception(what, *args)
