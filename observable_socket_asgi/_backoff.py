"""Reconnection policy, with no I/O: which close codes allow a reconnect, and how long to wait.

Kept pure so the delays and the rules are tested without a network or an event loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from .status import CloseCode

__all__ = ["NO_RECONNECT_CODES", "backoff", "may_reconnect", "parse_retry_after", "retry_delay"]

#: close codes after which the JS client does not reconnect: policy violation (the server
#: refused this client; retrying cannot help) and internal error (retrying may hammer a
#: broken server).
NO_RECONNECT_CODES = frozenset({CloseCode.POLICY_VIOLATION, CloseCode.INTERNAL_ERROR})


def may_reconnect(code: int | None) -> bool:
    """Return True if a connection closed with `code` may be reopened.

    1001 (going away), 1012 (service restart) and 1013 (try again later) say "come back";
    1006 (no close frame: a crash or a network fault) and a missing code are retried too.
    """
    return code not in NO_RECONNECT_CODES


def backoff(
    initial: float = 0.5,
    maximum: float = 10.0,
    factor: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield reconnection delays: exponential growth with full jitter, capped.

    The n-th delay is uniform in `[0, min(maximum, initial * factor**n))`, so many clients
    dropped by one server restart do not come back in lockstep. The generator never ends;
    make a fresh one after a successful connection, which resets the growth.

    Args:
        initial: the ceiling of the first delay, in seconds.
        maximum: the largest ceiling, in seconds.
        factor: how much the ceiling grows per attempt.
        rand: a source of floats in [0, 1); injectable for tests.
    """
    if initial < 0 or maximum < 0 or factor < 1:
        raise ValueError(
            f"expected initial >= 0, maximum >= 0, factor >= 1; got {initial}, {maximum}, {factor}"
        )
    ceiling = min(initial, maximum)
    while True:
        yield rand() * ceiling
        ceiling = min(maximum, ceiling * factor)


def retry_delay(delay: float, retry_after: float | None) -> float:
    """The wait before the next attempt: the backoff's `delay`, but never less than what a
    server refusing the handshake asked for in `Retry-After` (its jitter already spreads
    the clients it refused)."""
    if retry_after is None:
        return delay
    return max(delay, retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """Read a `Retry-After` header given in seconds; None if absent or not a number (an
    HTTP date is not honoured: the backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None
