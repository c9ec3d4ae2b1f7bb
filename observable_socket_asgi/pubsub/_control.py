"""The close message: "close every connection subscribed to this topic", on every worker.

Rules of the message (this module alone changes them):

    It travels on the topic's own channel, so it reaches exactly the workers that have a
    subscriber to the topic, on the topic's shard in a cluster, and after every push the
    same publisher sent on the topic before it. Its body is the publisher's 16-character
    origin, then `!close `, the close code in decimal, one space, and the reason in UTF-8
    (possibly empty):

        <origin>!close 1008 signed out

    A push body has `{` (a frame) or a digit (a numbered frame) after the origin, so `!`
    cannot be mistaken for one. A worker receiving it closes each local connection
    subscribed to the topic with that code and reason (`close_each`); the publishing worker
    closes its own at once and skips its own message, as for a push.

    The code is one a server may send (1000-1003, 1007-1014, 3000-4999) and the reason at
    most 123 bytes in UTF-8 (what fits a close frame): `close_body` refuses anything else,
    and `parse_close` reads anything else as no close message at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

__all__ = ["Closable", "check_close", "close_body", "close_each", "parse_close"]

logger = logging.getLogger("observable_socket_asgi.topics")

#: what follows the origin in a close message
MARK = b"!close "
#: the longest close reason a WebSocket close frame carries, in bytes
MAX_REASON_BYTES = 123


class Closable(Protocol):
    """What closing needs of a subscriber: the shell's (or the user Socket's) `close`."""

    async def close(self, code: int = ..., reason: str = ...) -> None: ...


def check_close(code: int, reason: str) -> bytes:
    """The reason in UTF-8, once `code` and `reason` are known to fit a close frame.

    Raises:
        ValueError: a code a server may not send, or a reason over 123 bytes.
        TypeError: a code that is not an int or a reason that is not a str.
    """
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"close code must be an int, got {type(code).__name__}")
    if not isinstance(reason, str):
        raise TypeError(f"close reason must be a str, got {type(reason).__name__}")
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise ValueError(f"close code must be 1000-1003, 1007-1014 or 3000-4999, got {int(code)}")
    encoded = reason.encode()
    if len(encoded) > MAX_REASON_BYTES:
        raise ValueError(
            f"close reason must be at most {MAX_REASON_BYTES} bytes in UTF-8, got {len(encoded)}"
        )
    return encoded


def close_body(origin: bytes, code: int, reason: str) -> bytes:
    """The PUBLISH body of a close message from `origin`.

    Raises:
        ValueError, TypeError: as `check_close`.
    """
    return origin + MARK + str(int(code)).encode() + b" " + check_close(code, reason)


def parse_close(body: bytes, origin_len: int) -> tuple[int, str] | None:
    """`(code, reason)` if `body` is a well-formed close message, else None."""
    if body[origin_len : origin_len + len(MARK)] != MARK:
        return None
    number, _, reason = body[origin_len + len(MARK) :].partition(b" ")
    try:
        code, text = int(number), reason.decode()
        check_close(code, text)
    except (ValueError, TypeError):
        return None
    return code, text


async def close_each(subscribers: Iterable[Closable], code: int, reason: str) -> int:
    """Close every one of `subscribers` with `code` and `reason`, at once; return how many.

    A failure to close one is logged and does not stop the others.
    """
    targets = list(subscribers)
    results = await asyncio.gather(
        *(sub.close(code, reason) for sub in targets), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            logger.error("closing a subscriber failed", exc_info=result)
    return len(targets)
