"""Stand-in subscribers for the pubsub tests: the public `Subscriber` protocol, no server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from observable_socket_asgi.errors import ConnectionClosed

_numbers = itertools.count(1)


class FakeSubscriber:
    """Records every frame it is handed; `wait` makes each write suspend until `gate` is set;
    `close()` runs its close callbacks, as a connection does."""

    def __init__(self, *, wait: bool = False) -> None:
        self.frames: list[str] = []
        self.member_id = f"fake.{next(_numbers)}"
        self.closed = False
        self.gate = asyncio.Event()
        self.messages: list[dict[str, Any]] = []
        self._wait = wait
        self.closers: list[Callable[[], None]] = []

    def push_nowait(self, message: dict[str, Any]) -> asyncio.Task[None] | None:
        self.messages.append(message)
        if not self._wait:
            self.frames.append(message["text"])
            return None
        return asyncio.get_running_loop().create_task(self.send_frame(message["text"]))

    async def send_frame(self, frame: str) -> None:
        if self.closed:
            raise ConnectionClosed("fake subscriber is closed")
        if self._wait:
            await self.gate.wait()
        self.frames.append(frame)

    def on_close(self, callback: Callable[[], None]) -> None:
        self.closers.append(callback)

    def close(self) -> None:
        self.closed = True
        for callback in self.closers:
            callback()
        self.closers.clear()
