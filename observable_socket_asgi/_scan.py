"""Bounded looks at a raw frame, for the cases where a full parse would cost too much or fail.

A frame over `max_message_bytes` must still be answered (413) with its uuid, but parsing it
whole costs memory and CPU in proportion to its size: 15 MiB of `[{},{},...]` is about half a
gigabyte of Python objects, and with permessage-deflate such a frame is 15 KiB on the wire.
A frame orjson refuses (a lone surrogate escape, which the browser's `JSON.stringify` writes
for a broken string) must be answered with its uuid too, or the JS client's request waits for
ever. `scan_uuid` reads the uuid from a small prefix of the text only; the JS client writes
`uuid` first.

orjson parses 1,024 levels of nesting but writes only 254, so a payload it accepted could not
be echoed. `too_deep` lets the parser refuse at `MAX_DEPTH` instead; it walks the parsed value
only when the frame holds enough brackets to be that deep, so ordinary frames pay two
`count()` calls.

Nothing here awaits, allocates in proportion to the frame, or raises.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_DEPTH", "SCAN_PREFIX", "may_be_too_deep", "scan_uuid", "too_deep", "utf8_size"]

#: The deepest nesting a frame may have (the envelope object is level 1). orjson writes at most
#: 254 levels; the room left lets a handler wrap what it echoes in a few levels of its own.
MAX_DEPTH = 128

#: How many characters of a frame `scan_uuid` reads.
SCAN_PREFIX = 8192

# Tokens of JSON text, matched at a position. Possessive quantifiers: no backtracking, so an
# unterminated string costs one pass over the prefix.
_WS = re.compile(r"[ \t\n\r]*+")
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*+)(?![0-9.eE])")
_BARE = re.compile(r"[^,}\]\s]++")
_STRUCTURE = re.compile(r'["\[\]{}]')
_KEYS = frozenset({"uuid", "track_id"})
_CHUNK = 1 << 16


def utf8_size(data: str | bytes) -> int:
    """Return the frame's size in UTF-8 bytes, encoding a `str` in bounded chunks."""
    if isinstance(data, bytes):
        return len(data)
    if len(data) <= _CHUNK:
        return len(data.encode("utf-8", "surrogatepass"))
    return sum(
        len(data[start : start + _CHUNK].encode("utf-8", "surrogatepass"))
        for start in range(0, len(data), _CHUNK)
    )


def scan_uuid(data: str | bytes, limit: int = SCAN_PREFIX) -> str | int | None:
    """Best effort: the top-level `uuid` (or `track_id`) of a frame, read from its first
    `limit` characters only.

    Returns:
        The uuid when it is a string or an integer that can be sent back, else None.
    """
    head = data[:limit]
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    found: dict[str, str | int | None] = {}
    try:
        pos = _WS.match(text).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] != "{":
            return None
        pos += 1
        while True:
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            token = _STRING.match(text, pos)
            if token is None:
                break
            key = json.loads(token.group())
            pos = _WS.match(text, token.end()).end()  # type: ignore[union-attr]
            if text[pos : pos + 1] != ":":
                break
            pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
            if key in _KEYS and key not in found and not text.startswith("null", pos):
                # As the parser does: a non-null `uuid` decides, even when unusable; `track_id`
                # counts only when `uuid` is absent or null.
                found[key] = _usable_uuid(text, pos)
                if key == "uuid":
                    break
            pos = _skip_value(text, pos)
            if pos < 0:
                break
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if text[pos : pos + 1] != ",":
                break
            pos += 1
    except (ValueError, RecursionError):
        pass
    if "uuid" in found:
        return found["uuid"]
    return found.get("track_id")


def too_deep(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Return True if `obj` (a parsed frame, level 1) nests lists and objects past `limit`."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        value, depth = pop()
        if depth > limit:
            return True
        for child in value.values() if type(value) is dict else value:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
    return False


def may_be_too_deep(data: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """True if the frame holds more than `limit` opening brackets: only then can it be too deep."""
    if isinstance(data, bytes):
        return data.count(b"[") + data.count(b"{") > limit
    return data.count("[") + data.count("{") > limit


def _usable_uuid(text: str, pos: int) -> str | int | None:
    token = _STRING.match(text, pos)
    if token is not None:
        value = json.loads(token.group())
        try:
            value.encode("utf-8")  # a lone surrogate could not be written back
        except UnicodeEncodeError:
            return None
        return str(value)
    number = _INTEGER.match(text, pos)
    if number is not None:
        value = int(number.group())
        return value if -(2**63) <= value < 2**64 else None  # what orjson can write back
    return None


def _skip_value(text: str, pos: int) -> int:
    """Return the position after the JSON value at `pos`, or -1 if it runs past the text."""
    first = text[pos : pos + 1]
    if first == '"':
        token = _STRING.match(text, pos)
        return -1 if token is None else token.end()
    if first not in ("[", "{"):
        token = _BARE.match(text, pos)
        return -1 if token is None else token.end()
    depth = 0
    while True:
        mark = _STRUCTURE.search(text, pos)
        if mark is None:
            return -1
        char = mark.group()
        if char == '"':
            token = _STRING.match(text, mark.start())
            if token is None:
                return -1
            pos = token.end()
            continue
        depth += 1 if char in "[{" else -1
        pos = mark.end()
        if depth == 0:
            return pos
