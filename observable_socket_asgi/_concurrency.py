"""Running user code: async detection, sync functions off the loop, and coroutines stepped
by hand.

Most coroutines the server starts (a request's, the server's `send` for a push) finish
without ever suspending. Stepping one by hand (`next(coro.__await__(), DONE)`) and paying
for anything more, a task, a timer, only if it suspends is what keeps the per-message cost
low: `Continuation` finishes such a coroutine in the awaiting task (a request that
suspended keeps the receive loop's task, see `server/connection.py`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async

__all__ = [
    "arity_accepts",
    "cancel_lost",
    "ensure_async",
    "is_async_callable",
    "raise_lost_cancel",
    "Continuation",
    "DONE",
    "Tracked",
]

#: What `next(awaitable.__await__(), DONE)` returns when the awaitable finishes in that
#: step. Stepping by hand this way, rather than with `coro.send(None)`, ends a coroutine
#: that returns None without creating a StopIteration, its traceback and its handling,
#: which cost a tenth of an echo request (the receive loop steps requests so; the push
#: writer in `server/_pushing.py` yields it for a send the server took at once).
DONE: Any = object()


def cancel_lost() -> bool:
    """Whether the current task was asked to cancel but no CancelledError reached it.

    A library can lose a cancel that lands while it answers: redis-py, under load, was
    seen both to turn it into its own timeout error and to return the answer as if nothing
    happened. A loop that retries or repeats asks this at every turn: otherwise a `stop()`
    that cancels it and awaits it waits forever.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_lost_cancel(cause: BaseException | None = None) -> None:
    """Raise the CancelledError a library lost (see `cancel_lost`), else return."""
    if cancel_lost():
        raise asyncio.CancelledError from cause


def is_async_callable(obj: Any) -> bool:
    """Return True for an `async def` function, or an object whose `__call__` is one."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - an instance with `async def __call__`
    return callable(obj) and inspect.iscoroutinefunction(call)


def ensure_async(
    fn: Callable[..., Any], executor: ThreadPoolExecutor | None
) -> Callable[..., Awaitable[Any]]:
    """Return `fn` itself when it is async, else a wrapper that runs it on `executor`.

    Plain functions run in a worker thread through asgiref's `sync_to_async`, never on
    asgiref's single shared thread (`thread_sensitive=False`): a blocking call in one handler
    cannot stall the event loop or other requests.
    """
    if is_async_callable(fn):
        return fn
    return sync_to_async(fn, thread_sensitive=False, executor=executor)


def arity_accepts(fn: Callable[..., Any], count: int) -> bool:
    """Return True if `fn` can be called with `count` positional arguments."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: assume it fits
        return True
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


class Continuation:
    """Finish, in the awaiting task, a coroutine whose first step the caller already ran.

    `await Continuation(coro, yielded)` is what `await coro` would have been had the first
    `coro.send(None)` not been made by hand: the task waits on what that step yielded, then
    every later send, throw (a cancellation) and close goes to `coro`. It lets a caller step
    a coroutine once and pay for a timer, a task or anything else only if it suspends.

    With `context`, every later step runs in it, as a task created for `coro` with that
    context would run them: a request keeps its own contextvars in whatever task finishes it.
    """

    __slots__ = ("_context", "_coro", "_yielded")

    def __init__(self, coro: Any, yielded: Any, context: contextvars.Context | None = None) -> None:
        self._coro = coro
        self._yielded = yielded
        self._context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded, context = self._coro, self._yielded, self._context
        send, throw = coro.send, coro.throw
        if context is not None:
            run = context.run
            send = functools.partial(run, send)
            throw = functools.partial(run, throw)
        while True:
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    yielded = throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = send(value)
                except StopIteration as stop:
                    return stop.value


class Tracked:
    """Tasks nobody awaits, kept by their owner so that its end cancels and awaits them.

    A task is held from `track()` (or `spawn()`) until it is done; `cancel_all()` cancels
    what is still running, waits for it, and repeats for tasks started meanwhile. Each
    task's own code logs its failures; what is left here is only its end.
    """

    __slots__ = ("_loop", "_tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # made on first use: most connections never keep a task
        self._tasks: set[asyncio.Task[Any]] | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start `coro` in a task of its own, held until it is done."""
        task = self._loop.create_task(coro)
        self.track(task)
        return task

    def track(self, task: asyncio.Task[Any]) -> None:
        """Hold `task` until it is done."""
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def cancel_all(self) -> None:
        """Cancel every held task but the current one, and wait until none is left."""
        tasks = self._tasks
        current = asyncio.current_task(self._loop)
        while tasks:
            pending = [task for task in tasks if task is not current]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            tasks.difference_update(pending)
