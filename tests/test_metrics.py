"""Prometheus metrics: the observer's figures, their exposition, and bounded labels."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("prometheus_client")

from observable_socket_asgi._observe import MALFORMED, PING, UNKNOWN
from observable_socket_asgi.metrics import PrometheusMetrics
from tests.metrics_helpers import Scrape


def scrape_of(metrics: PrometheusMetrics) -> Scrape:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return Scrape(body.decode())


def test_fresh_metrics_expose_every_family_at_zero() -> None:
    """Every family exists from the start, so dashboards and alerts see them at once."""
    s = scrape_of(PrometheusMetrics())
    for name in (
        "connections_open",
        "requests_in_flight",
        "queued_push_bytes",
        "slow_consumer_closes_total",
        "backplane_dropped_total",
    ):
        assert s.has(name), name
        assert s.value(name) == 0
    assert s.value("backplane_connected") == 1
    for label in (UNKNOWN, MALFORMED, PING):
        assert s.has("request_duration_seconds_count", route=label)


def test_requests_counted_by_route_and_status_with_durations() -> None:
    """Answered and handled requests are counted per (route, status), timed per route,
    and in-flight rises and falls around a handled request."""
    m = PrometheusMetrics()
    start = time.perf_counter()
    token = m.request_started("math/sum", {}, start)
    assert scrape_of(m).value("requests_in_flight") == 1
    m.request_finished(token, "math/sum", 200)
    m.answered(UNKNOWN, 404, start)
    m.answered(UNKNOWN, 404, start)
    m.answered(PING, 200, start)
    s = scrape_of(m)
    assert s.value("requests_in_flight") == 0
    assert s.value("requests_total", route="math/sum", status=200) == 1
    assert s.value("requests_total", route=UNKNOWN, status=404) == 2
    assert s.value("requests_total", route=PING, status=200) == 1
    assert s.value("request_duration_seconds_count", route="math/sum") == 1
    assert s.value("request_duration_seconds_count", route=UNKNOWN) == 2
    assert s.value("request_duration_seconds_bucket", route="math/sum", le="+Inf") == 1


def test_connections_pushes_and_backplane() -> None:
    """Connection, push and backplane events land in their families."""
    m = PrometheusMetrics()
    m.connection_accepted()
    m.connection_accepted()
    m.connection_refused("origin")
    m.connection_refused("not-a-known-reason")
    m.connection_closed(1000)
    m.connection_closed(4321)
    m.connection_accepted()
    m.push_sent()
    m.pushes_dropped(3)
    m.queued_push_bytes(100)
    m.queued_push_bytes(-40)
    m.slow_consumer_closed()
    m.backplane_connected(False)
    m.backplane_dropped()
    m.backplane_published(0.002)
    s = scrape_of(m)
    assert s.value("connections_open") == 1
    assert s.value("connections_total", outcome="accepted") == 3
    assert s.value("connections_total", outcome="refused_origin") == 1
    assert s.value("connections_total", outcome="refused_error") == 1
    assert s.label_values("connections_total", "outcome") >= {"accepted", "refused_origin"}
    assert s.value("disconnects_total", code=1000) == 1
    assert s.value("disconnects_total", code="other") == 1
    assert s.value("pushes_total", outcome="sent") == 1
    assert s.value("pushes_total", outcome="dropped") == 3
    assert s.value("queued_push_bytes") == 60
    assert s.value("slow_consumer_closes_total") == 1
    assert s.value("backplane_connected") == 0
    assert s.value("backplane_dropped_total") == 1
    assert s.value("backplane_publish_seconds_count") == 1


def test_two_instances_do_not_collide() -> None:
    """Each router's metrics live in a registry of their own."""
    a, b = PrometheusMetrics(), PrometheusMetrics()
    a.push_sent()
    assert scrape_of(a).value("pushes_total", outcome="sent") == 1
    assert scrape_of(b).value("pushes_total", outcome="sent") == 0


def test_openmetrics_is_served_when_asked_for() -> None:
    """A scraper that asks for OpenMetrics gets it, terminated by # EOF."""
    body, content_type = PrometheusMetrics().exposition("application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
