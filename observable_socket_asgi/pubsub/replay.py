"""The catch-up of a subscriber that resumes: its missed pushes, then the live ones.

Rules of a replay (this module alone holds pushes back):

    The subscriber is registered first, with a buffer here instead of its socket, and only
    then is the history read; so every push is either in what was read or in the buffer
    (or both: pushes at or below the offset read are dropped from the buffer). The replay
    is sent, then the buffer, and only then does the subscriber receive live, so nothing is
    duplicated and nothing is skipped. The fan-out fills the buffers (`fanout.SlicedFanout`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..errors import ConnectionClosed
from ._history import Recovery, Subscription
from .fanout import Held
from .subscriber import Subscriber

__all__ = ["Replays"]

_NOTHING = Subscription(False, None, None)


class Replays:
    """The subscribers catching up, per topic, with the pushes held back for them."""

    def __init__(self) -> None:
        #: topic -> subscribers catching up on it -> live pushes held back meanwhile
        self.holding: dict[str, dict[Subscriber, Held]] = {}

    async def catch_up(
        self,
        subscriber: Subscriber,
        topic: str,
        recover: Callable[[], Awaitable[Recovery | None]],
    ) -> Subscription:
        """Hold live pushes, `recover()` the position and the gap, send both, then go live.

        Returns:
            The subscription's position; not recovered when `recover()` found no history or
            the subscriber closed meanwhile.
        """
        held: Held = []
        self.holding.setdefault(topic, {})[subscriber] = held
        try:
            recovery = await recover()
            if recovery is None:
                result, top = _NOTHING, -1
            else:
                result = Subscription(recovery.recovered, recovery.offset, recovery.epoch)
                top = recovery.offset if recovery.recovered else -1
                for frame in recovery.frames:
                    await subscriber.send_frame(frame)
            while held:
                offset, frame = held.pop(0)
                if offset is None or offset > top:
                    await subscriber.send_frame(frame)
            return result
        except ConnectionClosed:
            return _NOTHING
        finally:
            self.drop(subscriber, topic)

    def drop(self, subscriber: Subscriber, topic: str) -> None:
        """Stop holding pushes for `subscriber` on `topic` (it left, or caught up)."""
        holding = self.holding.get(topic)
        if holding is not None:
            holding.pop(subscriber, None)
            if not holding:
                del self.holding[topic]
