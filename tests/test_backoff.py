"""The pure reconnection policy of the client and the Redis backplane: no loop, no network."""

from __future__ import annotations

import pytest

from observable_socket_asgi._backoff import NO_RECONNECT_CODES, backoff, may_reconnect
from observable_socket_asgi.status import CloseCode


def test_backoff_grows_exponentially_to_the_cap_with_full_jitter() -> None:
    """With the jitter at its top the delays double from `initial` and stop at the cap."""
    delays = backoff(0.5, 3.0, 2.0, rand=lambda: 1.0)
    assert [next(delays) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    zero = backoff(0.5, 3.0, 2.0, rand=lambda: 0.0)
    assert next(zero) == 0.0
    real = backoff(0.5, 3.0)
    assert all(0.0 <= next(real) <= 3.0 for _ in range(50))


def test_jitter_scales_each_ceiling() -> None:
    """Each delay is the random draw times that attempt's ceiling."""
    draws = iter([0.5, 0.25, 0.1])
    delays = backoff(1.0, 10.0, 2.0, rand=lambda: next(draws))
    assert [next(delays) for _ in range(3)] == [0.5, 0.5, 0.4]


def test_initial_above_the_cap_starts_at_the_cap() -> None:
    """A first ceiling larger than the maximum is clamped to it."""
    delays = backoff(5.0, 2.0, 2.0, rand=lambda: 1.0)
    assert [next(delays) for _ in range(2)] == [2.0, 2.0]


def test_a_fresh_generator_starts_over() -> None:
    """Growth is per generator: making a new one after a success resets it."""
    first = backoff(0.1, 10.0, 2.0, rand=lambda: 1.0)
    for _ in range(4):
        next(first)
    assert next(first) == pytest.approx(1.6)
    assert next(backoff(0.1, 10.0, 2.0, rand=lambda: 1.0)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("initial", "maximum", "factor"), [(1.0, 2.0, 0.5), (-1, 2, 2), (1, -2, 2)]
)
def test_backoff_rejects_nonsense(initial: float, maximum: float, factor: float) -> None:
    """Negative delays or a shrinking factor are mistakes, reported when the generator starts."""
    with pytest.raises(ValueError, match="expected initial >= 0, maximum >= 0, factor >= 1"):
        next(backoff(initial, maximum, factor))


def test_reconnect_policy_by_close_code() -> None:
    """Never after 1008/1011; after 1001, 1012, 1013 and an abnormal 1006, yes."""
    assert NO_RECONNECT_CODES == {CloseCode.POLICY_VIOLATION, CloseCode.INTERNAL_ERROR}
    assert not may_reconnect(1008)
    assert not may_reconnect(1011)
    for code in (1000, 1001, 1006, 1012, 1013, None):
        assert may_reconnect(code)


def test_retry_after_is_a_floor_for_the_next_attempt() -> None:
    """A 503's Retry-After (in seconds) is waited out at least; dates and junk are ignored."""
    from observable_socket_asgi._backoff import parse_retry_after, retry_delay

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 3 ") == 3.0
    for value in (None, "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "soon"):
        assert parse_retry_after(value) is None
    assert retry_delay(0.2, None) == 0.2
    assert retry_delay(0.2, 5.0) == 5.0
    assert retry_delay(9.0, 5.0) == 9.0
