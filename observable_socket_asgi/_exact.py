"""Numbers as sent: the slow paths of the wire format for integers past 64 bits.

orjson reads an integer past 64 bits as a float and says nothing, and refuses to write one;
`envelope.py` reads frames with msgspec (integers of any size exact) and writes them with
orjson. Only what orjson refused to write comes here (`dumps_wide`: the big integers written
as `orjson.Fragment`s), and only text msgspec refused or a person typed is read here
(`parse_exact`: the standard library, which names where a number JSON cannot carry is).
So the common frame never runs a line of this module.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from .errors import EncodeError, ProtocolError

__all__ = ["MAX_INT_DIGITS", "dumps_wide", "parse_exact", "widen"]

_dumps = orjson.dumps
_JSONEncodeError = orjson.JSONEncodeError
_Fragment = orjson.Fragment

# Exact numbers. orjson reads an integer past 64 bits as a float (2**70 arrives as
# 1.1805916207174113e+21) and says nothing; finding such a number afterwards costs a scan of
# every frame (a C regex over the echo frame costs a third of the parse). msgspec reads
# integers of any size exactly, as fast as orjson reads the frame, so frames are read with
# msgspec and written with orjson. orjson refuses to write an integer past 64 bits: that
# refusal is the test on the way out, and only a value it refused is walked again, its big
# integers written as `orjson.Fragment`s.
_INT_MIN = -(2**63)
_INT_END = 2**64  # orjson writes -2**63 <= n < 2**64
#: the most digits an integer may have: Python's own limit for converting text to int
MAX_INT_DIGITS = 4300


class _Unfit:
    """Stands, in a reparsed value, for a number JSON cannot carry exactly."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def parse_exact(data: str | bytes) -> Any:
    """Parse with the standard library, integers exact; refuse numbers JSON cannot carry,
    naming where they are.

    Raises:
        ProtocolError: a number past a double's range, `NaN`/`Infinity`, or an integer over
            `MAX_INT_DIGITS` digits.
        ValueError, RecursionError: text the standard library refuses.
    """
    unfit: list[_Unfit] = []

    def mark(text: str) -> _Unfit:
        unfit.append(_Unfit(text))
        return unfit[-1]

    def parse_int(text: str) -> int | _Unfit:
        digits = len(text) - (text[0] == "-")
        return mark(text) if digits > MAX_INT_DIGITS else int(text)

    def parse_float(text: str) -> float | _Unfit:
        value = float(text)
        return value if math.isfinite(value) else mark(text)

    obj = json.loads(data, parse_int=parse_int, parse_float=parse_float, parse_constant=mark)
    if unfit:
        uuid = obj.get("uuid") if type(obj) is dict else None
        where = _path_to(obj, unfit[0]) or "the value"
        raise ProtocolError(
            f"{where}: the number {_clip(unfit[0].text)} cannot be carried exactly "
            f"(integers of up to {MAX_INT_DIGITS} digits, finite doubles; "
            "NaN and Infinity are not JSON)",
            uuid=uuid if type(uuid) is str or type(uuid) is int else None,
        )
    return obj


def _path_to(value: Any, target: object, path: str = "") -> str | None:
    """The dotted path (`payload.items[3]`) to `target` in a parsed value, or None."""
    if value is target:
        return path
    if type(value) is dict:
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif type(value) is list:
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _path_to(item, target, where)
        if found is not None:
            return found
    return None


def widen(value: Any) -> Any:
    """`value` with every integer orjson cannot write replaced by its exact JSON text."""
    if type(value) is dict:
        return {k: widen(v) for k, v in value.items()}
    if type(value) is list or type(value) is tuple:
        return [widen(v) for v in value]
    if isinstance(value, int) and not _INT_MIN <= value < _INT_END:
        return _Fragment(str(int(value)))
    return value


def dumps_wide(frame: Any, exc: Exception | None) -> str:
    """Encode what orjson refused: exact when the cause was an integer past 64 bits.

    Raises:
        EncodeError: something else in `frame` JSON cannot express.
    """
    try:
        return _dumps(widen(frame)).decode()
    except (_JSONEncodeError, ValueError) as again:  # ValueError: too many digits for str()
        raise EncodeError(str(exc or again)) from None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:20]}...({len(text)} characters)"
