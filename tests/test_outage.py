"""Telling an outage in the logs: once when it starts, a summary per interval, once at its end."""

from __future__ import annotations

from observable_socket_asgi.pubsub._outage import OutageReport, Summary, redact_url


def test_first_failure_starts_the_outage_and_later_ones_are_counted() -> None:
    """Only the first failure or drop asks to be logged; the rest wait for the summary."""
    report = OutageReport(interval=10.0)
    assert not report.down
    assert report.failed(0.0)
    assert not report.failed(1.0)
    assert not report.dropped(2.0)
    assert report.down
    assert report.summary(5.0) is None  # not due yet
    assert report.summary(10.0) == Summary(lasted=10.0, attempts=1, dropped=1)
    assert report.summary(15.0) is None
    assert not report.dropped(16.0)
    assert report.summary(19.0) is None
    assert report.summary(20.0) == Summary(lasted=20.0, attempts=0, dropped=1)
    assert report.summary(40.0) is None  # nothing new: no line


def test_a_drop_can_start_the_outage_and_recovery_reports_the_rest() -> None:
    """A publish dropped before the listener noticed starts the outage too; recovery ends it."""
    report = OutageReport(interval=60.0)
    assert report.recovered(0.0) is None
    assert report.dropped(1.0)
    assert not report.dropped(2.0)
    assert report.recovered(4.0) == Summary(lasted=3.0, attempts=0, dropped=2)
    assert not report.down
    assert report.failed(5.0)


def test_redact_url() -> None:
    """Passwords never reach a log line; user names and hosts do."""
    assert redact_url("redis://:secret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("redis://bob:secret@h/1") == "redis://bob:***@h/1"
    assert redact_url("redis://bob@h") == "redis://bob@h"
    assert redact_url("redis://h:6379/0?password=secret") == "redis://h:6379/0?..."
    assert redact_url("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"
