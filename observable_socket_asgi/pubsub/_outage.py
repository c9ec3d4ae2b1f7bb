"""How an outage of a dependency (the Redis backplane) is told in the logs, with no I/O.

A log line per failed attempt or per dropped publish floods the logs exactly when someone is
reading them: 64 lines for 59 publishes in 3 s. The rule instead: one line when the outage
starts, then one summary per `interval` while it lasts (attempts made, publishes dropped),
and one line when it ends. The caller passes the time, so the rule is tested without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OutageReport", "Summary", "redact_url"]


@dataclass(frozen=True, slots=True)
class Summary:
    """What happened since the outage began (`lasted`) and since the last report."""

    lasted: float
    attempts: int
    dropped: int


class OutageReport:
    """Counts failures and drops during an outage and says when to log.

    Args:
        interval: seconds between two summaries while the outage lasts.
    """

    __slots__ = ("_attempts", "_dropped", "_last", "_since", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # when the outage began; None while the dependency is up
        self._since: float | None = None
        # when the last line (start or summary) was logged
        self._last = 0.0
        # failed attempts and dropped publishes since the last line
        self._attempts = 0
        self._dropped = 0

    @property
    def down(self) -> bool:
        """True between `failed()` and `recovered()`."""
        return self._since is not None

    def failed(self, now: float) -> bool:
        """An attempt failed; return True if this starts the outage (log it, once)."""
        if self._since is None:
            self._since = self._last = now
            self._attempts = self._dropped = 0
            return True
        self._attempts += 1
        return False

    def dropped(self, now: float) -> bool:
        """A publish was dropped; return True if this starts the outage (log it, once)."""
        starts = self._since is None
        if starts:
            self._since = self._last = now
            self._attempts = self._dropped = 0
        self._dropped += 1
        return starts

    def summary(self, now: float) -> Summary | None:
        """Return the counts to log if a summary is due, and start a new period; else None."""
        if self._since is None or now - self._last < self.interval:
            return None
        if self._attempts == 0 and self._dropped == 0:
            return None
        report = Summary(now - self._since, self._attempts, self._dropped)
        self._last = now
        self._attempts = self._dropped = 0
        return report

    def recovered(self, now: float) -> Summary | None:
        """The dependency is back: return what is left to report (None if it was not down)."""
        if self._since is None:
            return None
        report = Summary(now - self._since, self._attempts, self._dropped)
        self._since = None
        self._attempts = self._dropped = 0
        return report


def redact_url(url: str) -> str:
    """Return `url` without its password (`redis://user:***@host:6379/0`), for logs.

    A query string (where redis-py also reads `password=`) is left out.
    """
    url, query, _ = url.partition("?")
    suffix = "?..." if query else ""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url + suffix
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url + suffix
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostpart}{suffix}"
