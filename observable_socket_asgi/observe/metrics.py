"""Prometheus metrics: an observer that records the router's events with `prometheus_client`.

Install with `pip install "observable-socket-asgi[metrics]"`. `SocketRouter(metrics_url=...)`
builds one (`build_metrics()`) and answers a plain HTTP GET at that path with
`scrape()`; nothing here is imported unless a router asks for metrics.

Every family is prefixed `observable_socket_` and registered in a registry of the router's
own (`router.metrics.registry`), so several routers in one process never collide and an
application can register more collectors there or scrape it from its own endpoint.

With several worker processes (`uvicorn --workers N`), set `PROMETHEUS_MULTIPROC_DIR` to an
empty directory before the workers start: `prometheus_client` then keeps every value in a
file per process, and each scrape, whichever worker answers it, adds up all of them
(gauges of live processes only; the worker marks itself dead at lifespan shutdown).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from .._extras import require
from .._responses import Response, header, method_not_allowed
from ..types import ASGIReceiveCallable, ASGISendCallable, Scope
from ._observe import MALFORMED, PING, REFUSAL_REASONS, UNKNOWN, Observer, close_code_label

with require("metrics", "metrics_url"):
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.utils import floatToGoString


__all__ = [
    "DURATION_BUCKETS",
    "PUBLISH_BUCKETS",
    "MultiprocessMetrics",
    "PrometheusMetrics",
    "build_metrics",
    "multiprocess_mode",
]

#: `request_duration_seconds` buckets: a WebSocket request is usually well under 1 ms
DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
#: `backplane_publish_seconds` buckets: a Redis PUBLISH on a LAN, up to its timeout
PUBLISH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 2.0)

_PREFIX = "observable_socket"

# Each family's help text, by name without the prefix: both observers register the same
# families (one as collected figures, one as prometheus_client metric objects).
_HELP = {
    "connections_open": "WebSocket connections open now.",
    "connections": "WebSocket handshakes by outcome: accepted, or refused_<reason>.",
    "disconnects": "Accepted connections ended, by close code (other: non-standard).",
    "requests": "Frames answered, by route label and status.",
    "request_duration_seconds": (
        "From frame read to reply handed to the server (or queued behind a write)."
    ),
    "requests_in_flight": "Requests read whose reply is not yet handed to the server.",
    "pushes": "Pushes by outcome: sent (handed to the server) or dropped.",
    "queued_push_bytes": "Bytes of pushes waiting behind a busy writer.",
    "slow_consumer_closes": "Connections closed for not reading their pushes.",
    "backplane_connected": "1 while publishes reach every worker, else 0.",
    "backplane_dropped": "Publishes that reached this worker's subscribers only.",
    "backplane_publish_seconds": "Time to hand one publish to the other workers.",
}


def multiprocess_mode() -> bool:
    """True when `prometheus_client` keeps values in `PROMETHEUS_MULTIPROC_DIR` files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _Histogram:
    """Bucket counts and a sum, kept as plain numbers; `observe` is a bisect and two adds."""

    __slots__ = ("bounds", "counts", "les", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # the `le` label of each bucket, as prometheus_client writes it
        self.les: list[str] = [
            floatToGoString(bound)  # type: ignore[no-untyped-call]
            for bound in (*bounds, math.inf)
        ]
        # one count per bound, plus the +Inf bucket; not cumulative
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative `(le, count)` pairs, as the exposition wants them."""
        counts = list(self.counts)  # one C-level copy: consistent if read from another thread
        out, running = [], 0
        for le, count in zip(self.les, counts, strict=True):
            running += count
            out.append((le, float(running)))
        return out


class PrometheusMetrics(Observer):
    """Records the router's events as Prometheus metrics, in this process.

    The figures are plain numbers updated on the event loop (no lock, no label lookup per
    event) and turned into metric families when the registry is collected: that keeps the
    cost per request to a few additions. `MultiprocessMetrics` is the variant for several
    workers.

    Args:
        registry: where the families are registered; a fresh `CollectorRegistry` by default.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self._open = 0
        self._in_flight = 0
        self._queued_bytes = 0
        self._outcomes: dict[str, int] = {"accepted": 0}
        self._disconnects: dict[str, int] = {}
        # (route label, status) -> replies; bounded: registered routes x statuses 100-599
        self._requests: dict[tuple[str, int], int] = {}
        self._durations: dict[str, _Histogram] = {}
        self._sent = 0
        self._dropped = 0
        self._slow_closes = 0
        self._backplane_up = 1
        self._backplane_dropped = 0
        self._publish = _Histogram(PUBLISH_BUCKETS)
        # Every fixed series exists from the start, at zero, so a dashboard sees it at once.
        for reason in REFUSAL_REASONS:
            self._outcomes["refused_" + reason] = 0
        for label in (UNKNOWN, MALFORMED, PING):
            self._durations[label] = _Histogram(DURATION_BUCKETS)
        self._register()

    def _register(self) -> None:
        self.registry.register(self)

    # Observer: connections

    def connection_accepted(self) -> None:
        self._outcomes["accepted"] += 1
        self._open += 1

    def connection_refused(self, reason: str) -> None:
        key = "refused_" + (reason if reason in REFUSAL_REASONS else "error")
        self._outcomes[key] += 1

    def connection_closed(self, code: int | None) -> None:
        self._open -= 1
        label = close_code_label(code)
        self._disconnects[label] = self._disconnects.get(label, 0) + 1

    # Observer: requests

    def request_started(self, route: str, headers: Mapping[str, Any], started: float) -> Any:
        self._in_flight += 1
        return started

    def request_finished(self, token: Any, route: str, status: int | None) -> None:
        self._in_flight -= 1
        if status is None:  # cancelled: no reply to count
            return
        self.answered(route, status, token)

    def answered(self, route: str, status: int, started: float) -> None:
        key = (route, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = _Histogram(DURATION_BUCKETS)
        histogram.observe(time.perf_counter() - started)

    # Observer: pushes

    def push_sent(self) -> None:
        self._sent += 1

    def pushes_dropped(self, count: int) -> None:
        self._dropped += count

    def queued_push_bytes(self, delta: int) -> None:
        self._queued_bytes += delta

    def slow_consumer_closed(self) -> None:
        self._slow_closes += 1

    # Observer: backplane

    def backplane_connected(self, connected: bool) -> None:
        self._backplane_up = 1 if connected else 0

    def backplane_dropped(self) -> None:
        self._backplane_dropped += 1

    def backplane_published(self, seconds: float) -> None:
        self._publish.observe(seconds)

    # Collection (prometheus_client's Collector protocol)

    def collect(self) -> Iterator[Metric]:
        """The families, from the current figures; safe to call from another thread."""
        yield _gauge("connections_open", self._open)
        yield _counter("connections", "outcome", dict(self._outcomes))
        yield _counter("disconnects", "code", dict(self._disconnects))
        requests = CounterMetricFamily(
            f"{_PREFIX}_requests", _HELP["requests"], labels=["route", "status"]
        )
        for (route, status), count in list(self._requests.items()):
            requests.add_metric([route, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            f"{_PREFIX}_request_duration_seconds",
            _HELP["request_duration_seconds"],
            labels=["route"],
        )
        for route, histogram in list(self._durations.items()):
            durations.add_metric([route], histogram.buckets(), histogram.total)
        yield durations
        yield _gauge("requests_in_flight", self._in_flight)
        yield _counter("pushes", "outcome", {"sent": self._sent, "dropped": self._dropped})
        yield _gauge("queued_push_bytes", self._queued_bytes)
        yield _counter("slow_consumer_closes", None, {"": self._slow_closes})
        yield _gauge("backplane_connected", self._backplane_up)
        yield _counter("backplane_dropped", None, {"": self._backplane_dropped})
        publish = HistogramMetricFamily(
            f"{_PREFIX}_backplane_publish_seconds", _HELP["backplane_publish_seconds"]
        )
        publish.add_metric([], self._publish.buckets(), self._publish.total)
        yield publish

    def describe(self) -> list[Metric]:
        """The families this collector yields (the registry checks names against them)."""
        return list(self.collect())

    # Exposition

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Return the metrics as `(body, content_type)`, in the format `accept` prefers."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Serve the metrics as an ASGI app of its own, at any path it is mounted on
        (`app.mount("/metrics", router.metrics)` in FastAPI or Starlette)."""
        if scope["type"] != "http":
            raise ValueError(f"the metrics app serves http only, got {scope['type']!r}")
        await self.scrape(scope, send)

    async def scrape(self, scope: Scope, send: ASGISendCallable) -> None:
        """Answer one HTTP request for the metrics: GET or HEAD, else 405."""
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await method_not_allowed("GET the metrics")(scope, send)
            return
        body, content_type = await self._render(header(scope, b"accept"))
        await Response(200, body, content_type)(scope, send)

    async def _render(self, accept: str | None) -> tuple[bytes, str]:
        # A few dozen series from plain numbers: cheap enough for the event loop.
        return self.exposition(accept)


class MultiprocessMetrics(PrometheusMetrics):
    """The same families, for several workers (`PROMETHEUS_MULTIPROC_DIR` is set).

    Every event is written to this worker's memory-mapped files through prometheus_client's
    own metric objects, which costs more per event than `PrometheusMetrics`; a scrape, on
    whichever worker, adds up the files of every worker. Gauges count live workers only.
    """

    def _register(self) -> None:
        reg = self.registry

        def counter(name: str, *labels: str) -> Counter:
            return Counter(name, _HELP[name], labels, namespace=_PREFIX, registry=reg)

        def gauge(name: str, mode: Literal["livesum", "livemin"] = "livesum") -> Gauge:
            return Gauge(name, _HELP[name], namespace=_PREFIX, registry=reg, multiprocess_mode=mode)

        def histogram(name: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(
                name, _HELP[name], labels, namespace=_PREFIX, registry=reg, buckets=buckets
            )

        self.connections_open = gauge("connections_open")
        self.connections_total = counter("connections", "outcome")
        self.disconnects_total = counter("disconnects", "code")
        self.requests_total = counter("requests", "route", "status")
        self.request_duration_seconds = histogram(
            "request_duration_seconds", DURATION_BUCKETS, "route"
        )
        self.requests_in_flight = gauge("requests_in_flight")
        self.pushes_total = counter("pushes", "outcome")
        self.queued_push_bytes_gauge = gauge("queued_push_bytes")
        self.slow_consumer_closes_total = counter("slow_consumer_closes")
        # The backplane counts as connected only while every worker's is (the lowest value).
        self.backplane_connected_gauge = gauge("backplane_connected", "livemin")
        self.backplane_dropped_total = counter("backplane_dropped")
        self.backplane_publish_seconds = histogram("backplane_publish_seconds", PUBLISH_BUCKETS)
        self.backplane_connected_gauge.set(1)
        # Children by label, looked up once: `labels()` takes a lock and builds a key.
        self._children: dict[tuple[str, int], Any] = {}
        self._histograms: dict[str, Any] = {}
        self._outcome_children = {
            outcome: self.connections_total.labels(outcome) for outcome in self._outcomes
        }
        self._disconnect_children: dict[str, Any] = {}
        self._sent_child = self.pushes_total.labels("sent")
        self._dropped_child = self.pushes_total.labels("dropped")
        for label in self._durations:
            self._histograms[label] = self.request_duration_seconds.labels(label)

    def connection_accepted(self) -> None:
        self._outcome_children["accepted"].inc()
        self.connections_open.inc()

    def connection_refused(self, reason: str) -> None:
        key = "refused_" + (reason if reason in REFUSAL_REASONS else "error")
        self._outcome_children[key].inc()

    def connection_closed(self, code: int | None) -> None:
        self.connections_open.dec()
        label = close_code_label(code)
        child = self._disconnect_children.get(label)
        if child is None:
            child = self._disconnect_children[label] = self.disconnects_total.labels(label)
        child.inc()

    def request_started(self, route: str, headers: Mapping[str, Any], started: float) -> Any:
        self.requests_in_flight.inc()
        return started

    def request_finished(self, token: Any, route: str, status: int | None) -> None:
        self.requests_in_flight.dec()
        if status is not None:
            self.answered(route, status, token)

    def answered(self, route: str, status: int, started: float) -> None:
        key = (route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests_total.labels(route, str(status))
        child.inc()
        histogram = self._histograms.get(route)
        if histogram is None:
            histogram = self._histograms[route] = self.request_duration_seconds.labels(route)
        histogram.observe(time.perf_counter() - started)

    def push_sent(self) -> None:
        self._sent_child.inc()

    def pushes_dropped(self, count: int) -> None:
        self._dropped_child.inc(count)

    def queued_push_bytes(self, delta: int) -> None:
        self.queued_push_bytes_gauge.inc(delta)

    def slow_consumer_closed(self) -> None:
        self.slow_consumer_closes_total.inc()

    def backplane_connected(self, connected: bool) -> None:
        self.backplane_connected_gauge.set(1 if connected else 0)

    def backplane_dropped(self) -> None:
        self.backplane_dropped_total.inc()

    def backplane_published(self, seconds: float) -> None:
        self.backplane_publish_seconds.observe(seconds)

    def shutdown(self) -> None:
        from prometheus_client import multiprocess

        # This worker's live gauges stop counting; its counters stay in the sums.
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Return every worker's metrics as `(body, content_type)`."""
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type

    async def _render(self, accept: str | None) -> tuple[bytes, str]:
        # Reads every worker's files: off the event loop.
        return await asyncio.to_thread(self.exposition, accept)


def build_metrics() -> PrometheusMetrics:
    """The metrics observer for this process: multiprocess when the environment says so."""
    return MultiprocessMetrics() if multiprocess_mode() else PrometheusMetrics()


def _gauge(name: str, value: float) -> Metric:
    return GaugeMetricFamily(f"{_PREFIX}_{name}", _HELP[name], value=value)


def _counter(name: str, label: str | None, values: dict[str, int]) -> Metric:
    if label is None:
        return CounterMetricFamily(f"{_PREFIX}_{name}", _HELP[name], value=values[""])
    family = CounterMetricFamily(f"{_PREFIX}_{name}", _HELP[name], labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family
