"""Bounded looks at raw frames: the uuid from a prefix, the UTF-8 size, the nesting depth."""

from __future__ import annotations

import tracemalloc

import pytest

from observable_socket_asgi._scan import (
    MAX_DEPTH,
    may_be_too_deep,
    scan_uuid,
    too_deep,
    utf8_size,
)
from observable_socket_asgi.envelope import parse_request
from observable_socket_asgi.errors import FrameTooLarge

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("frame", "uuid"),
    [
        ('{"uuid":"a5e4e2e8","route":"x","payload":[1,2', "a5e4e2e8"),
        ('  { "route" : "x" , "uuid" : 42 , "payload": "\\ud800"}', 42),
        ('{"payload":{"uuid":"inner"},"headers":["]}"],"uuid":"outer"', "outer"),
        ('{"payload":"\\"uuid\\":1","uuid":-3}', -3),
        ('{"track_id":"t","route":"x"', "t"),
        ('{"uuid":null,"track_id":7', 7),
        ('{"uuid":[],"track_id":7', None),
        ('{"uuid":1.5,', None),
        ('{"uuid":"\\ud800",', None),
        ('{"uuid":123456789012345678901234567890,', None),
        ('{"uuid":"caf\\u00e9"', "café"),
        ('["uuid","x"]', None),
        ("not json", None),
        ("", None),
        ('{"uuid', None),
    ],
)
def test_scan_uuid(frame: str, uuid: object) -> None:
    """The top-level uuid (or track_id) is read as the parser would read it, or None."""
    assert scan_uuid(frame) == uuid
    assert scan_uuid(frame.encode("utf-8", "surrogatepass")) == uuid


def test_scan_uuid_reads_only_its_prefix() -> None:
    """A uuid past the prefix is not looked for: the scan's cost does not grow with the frame."""
    frame = '{"payload":"' + "x" * 10_000 + '","uuid":"late"}'
    assert scan_uuid(frame) is None
    assert scan_uuid(frame, limit=len(frame)) == "late"


def test_utf8_size_counts_bytes_without_a_full_copy() -> None:
    """Sizes match a plain encode, for text over the chunk size and with surrogates."""
    for text in ("", "abc", "é" * 70_000, "\ud800" * 3, "😀" * 40_000):
        assert utf8_size(text) == len(text.encode("utf-8", "surrogatepass"))
    assert utf8_size(b"abc") == 3


def test_depth() -> None:
    """Depth counts the envelope object as level 1; only bracket-rich frames are walked."""
    assert not too_deep({"payload": [[[]]]}, 4)
    assert too_deep({"payload": [[[]]]}, 3)
    assert too_deep({"a": 1, "payload": [1, {"b": [[]]}]}, 4)
    assert not may_be_too_deep('{"payload": [1, 2, 3]}')
    assert may_be_too_deep(b"[" * (MAX_DEPTH + 1))


def test_refusing_15_mib_costs_a_prefix_of_memory() -> None:
    """Refusing 15 MiB of `[{},{},...]` over a 1 MiB limit allocates far less than 3 x the
    limit (a parse of it allocates about half a gigabyte)."""
    frame = '{"uuid":"big","route":"echo","payload":[' + "{}," * (5 * MIB) + "{}]}"
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            parse_request(frame, MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.uuid == "big" and info.value.status == 413
    assert peak < 3 * MIB, peak
