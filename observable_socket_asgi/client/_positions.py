"""The client's resume bookkeeping, with no I/O: the last position seen per topic.

A push on a topic with history carries `headers.offset` (an integer) and `headers.epoch` (a
string). The client keeps the newest position per topic: a later offset in the same epoch,
or any offset in another epoch (the server lost its history and started over). The answer
of a subscribe route whose payload holds `offset` and `epoch` counts the same way. After a
reconnect the app's subscribe calls are sent again with `since` set to that position.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Position", "Positions"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a topic: the newest `offset` it has, within `epoch`."""

    offset: int
    epoch: str

    def to_dict(self) -> dict[str, Any]:
        """The `since` value a subscribe route takes: `{"offset": n, "epoch": e}`."""
        return {"offset": self.offset, "epoch": self.epoch}


def read_position(fields: Any) -> Position | None:
    """The position in a push's headers or an answer's payload, if it holds one."""
    if not isinstance(fields, Mapping):
        return None
    offset, epoch = fields.get("offset"), fields.get("epoch")
    if type(offset) is int and offset >= 0 and type(epoch) is str:
        return Position(offset, epoch)
    return None


class Positions:
    """The newest position per topic, for at most `max_topics` topics (least recent go)."""

    def __init__(self, max_topics: int = 1024) -> None:
        if max_topics < 1:
            raise ValueError(f"max_topics must be at least 1, got {max_topics}")
        self.max_topics = max_topics
        self._positions: OrderedDict[str, Position] = OrderedDict()

    def __len__(self) -> int:
        return len(self._positions)

    def get(self, topic: str) -> Position | None:
        """The last position seen on `topic`, or None."""
        return self._positions.get(topic)

    def forget(self, topic: str) -> None:
        """Drop `topic`'s position: the next subscribe starts without one."""
        self._positions.pop(topic, None)

    def observe(self, topic: str | None, fields: Any) -> bool:
        """Take the position in `fields` (push headers, answer payload) if it is newer.

        Returns:
            True if the topic's position changed.
        """
        if topic is None:
            return False
        seen = read_position(fields)
        if seen is None:
            return False
        positions = self._positions
        current = positions.get(topic)
        if current is not None:
            if current.epoch == seen.epoch and seen.offset <= current.offset:
                return False
            positions.move_to_end(topic)
        positions[topic] = seen
        if len(positions) > self.max_topics:
            positions.popitem(last=False)
        return True
