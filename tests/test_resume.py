"""The client's position bookkeeping, without a socket."""

from __future__ import annotations

import pytest

from observable_socket_asgi.client._positions import Position, Positions, read_position


def test_newer_offsets_advance_and_older_ones_do_not() -> None:
    """Within an epoch only a higher offset moves the position."""
    p = Positions()
    assert p.observe("t", {"offset": 3, "epoch": "e"})
    assert not p.observe("t", {"offset": 2, "epoch": "e"})
    assert not p.observe("t", {"offset": 3, "epoch": "e"})
    assert p.observe("t", {"offset": 4, "epoch": "e"})
    assert p.get("t") == Position(4, "e")


def test_another_epoch_replaces_the_position() -> None:
    """A new epoch (history lost) wins even with a lower offset."""
    p = Positions()
    p.observe("t", {"offset": 9, "epoch": "old"})
    assert p.observe("t", {"offset": 1, "epoch": "new"})
    assert p.get("t") == Position(1, "new")
    assert p.get("t") is not None and p.get("t").to_dict() == {"offset": 1, "epoch": "new"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "fields",
    [
        None,
        {},
        {"offset": "1", "epoch": "e"},
        {"offset": 1},
        {"offset": -1, "epoch": "e"},
        {"offset": True, "epoch": "e"},
        [1, "e"],
    ],
)
def test_frames_without_a_position_are_ignored(fields: object) -> None:
    """Pushes on topics without history (or junk) leave positions alone."""
    p = Positions()
    assert read_position(fields) is None
    assert not p.observe("t", fields)
    assert len(p) == 0


def test_topics_are_bounded_least_recent_first() -> None:
    """Past max_topics the least recently advanced topic is forgotten."""
    p = Positions(max_topics=2)
    p.observe("a", {"offset": 1, "epoch": "e"})
    p.observe("b", {"offset": 1, "epoch": "e"})
    p.observe("a", {"offset": 2, "epoch": "e"})
    p.observe("c", {"offset": 1, "epoch": "e"})
    assert p.get("b") is None and p.get("a") == Position(2, "e") and len(p) == 2
    p.forget("a")
    assert p.get("a") is None
    assert not p.observe(None, {"offset": 1, "epoch": "e"})
