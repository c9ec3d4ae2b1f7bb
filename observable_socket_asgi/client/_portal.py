"""An event loop on a thread of its own, for driving async code from synchronous code.

The blocking face of the test client runs the app here, so a plain `def` test (no async test
plugin) can use it, the way Starlette's TestClient runs an app behind an anyio portal. The
loop lives exactly as long as the portal: `stop()` cancels whatever is still running on it,
shuts its default executor down, closes it and joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Portal"]

T = TypeVar("T")


class Portal:
    """A private event loop running on a daemon thread; `call()` runs a coroutine on it."""

    def __init__(self, *, debug: bool = False) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.set_debug(debug)
        # daemon: a test that forgets to close the client must not keep the interpreter alive
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="observable-socket-portal", daemon=True
        )
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's event loop."""
        return self._loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the portal's loop and return its result (or raise its exception).

        Raises:
            RuntimeError: the portal is stopped, or called from its own thread (a deadlock).
        """
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("the portal is stopped")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a portal cannot be called from its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self) -> None:
        """Cancel what still runs on the loop, close it and join the thread (idempotent)."""
        loop = self._loop
        if loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._drain(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join()
        loop.close()

    async def _drain(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._loop.shutdown_asyncgens()
        await self._loop.shutdown_default_executor()
