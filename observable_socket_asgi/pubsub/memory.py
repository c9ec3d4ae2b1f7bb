"""The in-process transport: nothing to carry, because one process needs no broker."""

from __future__ import annotations

from .transport import Backplane, Receiver

__all__ = ["InMemoryBackplane"]


class InMemoryBackplane(Backplane):
    """Topics within one process: the default, and all a single worker needs."""

    async def start(self, receiver: Receiver) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def subscribe(self, topic: str) -> None:
        pass

    def unsubscribe(self, topic: str) -> None:
        pass

    async def publish(self, topic: str, frame: str) -> None:
        pass
