"""Prometheus metrics: an observer that records the router's events with `prometheus_client`.

Install with `pip install "observable-socket-asgi[metrics]"`. `SocketRouter(metrics_url=...)`
builds one `PrometheusMetrics` and answers a plain HTTP GET at that path with
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
import os
import time
from collections.abc import Mapping
from typing import Any

from ._observe import MALFORMED, PING, REFUSAL_REASONS, UNKNOWN, Observer, close_code_label
from .types import ASGISendCallable, Scope

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import choose_encoder
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "metrics_url needs prometheus_client: pip install 'observable-socket-asgi[metrics]'"
    ) from exc

__all__ = ["DURATION_BUCKETS", "PUBLISH_BUCKETS", "PrometheusMetrics", "multiprocess_mode"]

#: `request_duration_seconds` buckets: a WebSocket request is usually well under 1 ms
DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
#: `backplane_publish_seconds` buckets: a Redis PUBLISH on a LAN, up to its timeout
PUBLISH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 2.0)

_PREFIX = "observable_socket"


def multiprocess_mode() -> bool:
    """True when `prometheus_client` keeps values in `PROMETHEUS_MULTIPROC_DIR` files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class PrometheusMetrics(Observer):
    """Records the router's events as Prometheus metrics.

    Args:
        registry: where the families are registered; a fresh `CollectorRegistry` by default.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        reg = self.registry
        # Gauges are summed over live workers in multiprocess mode; the backplane counts as
        # connected only while every worker's is (the lowest value).
        self.connections_open = Gauge(
            "connections_open", "WebSocket connections open now.",
            namespace=_PREFIX, registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.connections_total = Counter(
            "connections", "WebSocket handshakes by outcome: accepted, or refused_<reason>.",
            ["outcome"], namespace=_PREFIX, registry=reg,
        )  # fmt: skip
        self.disconnects_total = Counter(
            "disconnects", "Accepted connections ended, by close code (other: non-standard).",
            ["code"], namespace=_PREFIX, registry=reg,
        )  # fmt: skip
        self.requests_total = Counter(
            "requests", "Frames answered, by route label and status.",
            ["route", "status"], namespace=_PREFIX, registry=reg,
        )  # fmt: skip
        self.request_duration_seconds = Histogram(
            "request_duration_seconds",
            "From frame read to reply handed to the server (or queued behind a write).",
            ["route"], namespace=_PREFIX, registry=reg, buckets=DURATION_BUCKETS,
        )  # fmt: skip
        self.requests_in_flight = Gauge(
            "requests_in_flight", "Requests read whose reply is not yet handed to the server.",
            namespace=_PREFIX, registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.pushes_total = Counter(
            "pushes", "Pushes by outcome: sent (handed to the server) or dropped.",
            ["outcome"], namespace=_PREFIX, registry=reg,
        )  # fmt: skip
        self.queued_push_bytes_gauge = Gauge(
            "queued_push_bytes", "Bytes of pushes waiting behind a busy writer.",
            namespace=_PREFIX, registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.slow_consumer_closes_total = Counter(
            "slow_consumer_closes", "Connections closed for not reading their pushes.",
            namespace=_PREFIX, registry=reg,
        )  # fmt: skip
        self.backplane_connected_gauge = Gauge(
            "backplane_connected", "1 while publishes reach every worker, else 0.",
            namespace=_PREFIX, registry=reg, multiprocess_mode="livemin",
        )  # fmt: skip
        self.backplane_dropped_total = Counter(
            "backplane_dropped", "Publishes that reached this worker's subscribers only.",
            namespace=_PREFIX, registry=reg,
        )  # fmt: skip
        self.backplane_publish_seconds = Histogram(
            "backplane_publish_seconds", "Time to hand one publish to the other workers.",
            namespace=_PREFIX, registry=reg, buckets=PUBLISH_BUCKETS,
        )  # fmt: skip
        self.backplane_connected_gauge.set(1)

        # Children by label, looked up once: `labels()` takes a lock and builds a key on
        # every call. The keys are bounded (registered routes x statuses 100-599).
        self._requests: dict[tuple[str, int], Any] = {}
        self._durations: dict[str, Any] = {}
        self._refused = {
            reason: self.connections_total.labels("refused_" + reason) for reason in REFUSAL_REASONS
        }
        self._accepted = self.connections_total.labels("accepted")
        self._disconnects: dict[str, Any] = {}
        self._sent = self.pushes_total.labels("sent")
        self._dropped = self.pushes_total.labels("dropped")
        # Every fixed series exists from the start, at zero, so a dashboard sees it at once.
        for label in (UNKNOWN, MALFORMED, PING):
            self._duration(label)

    # Observer: connections

    def connection_accepted(self) -> None:
        self._accepted.inc()
        self.connections_open.inc()

    def connection_refused(self, reason: str) -> None:
        child = self._refused.get(reason)
        if child is None:  # a reason this version does not know: still bounded
            child = self._refused["error"]
        child.inc()

    def connection_closed(self, code: int | None) -> None:
        self.connections_open.dec()
        label = close_code_label(code)
        child = self._disconnects.get(label)
        if child is None:
            child = self._disconnects[label] = self.disconnects_total.labels(label)
        child.inc()

    # Observer: requests

    def request_started(self, route: str, headers: Mapping[str, Any], started: float) -> Any:
        self.requests_in_flight.inc()
        return started

    def request_finished(self, token: Any, route: str, status: int | None) -> None:
        self.requests_in_flight.dec()
        if status is not None:  # None: cancelled, no reply to count
            self.answered(route, status, token)

    def answered(self, route: str, status: int, started: float) -> None:
        key = (route, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests_total.labels(route, str(status))
        child.inc()
        self._duration(route).observe(time.perf_counter() - started)

    # Observer: pushes

    def push_sent(self) -> None:
        self._sent.inc()

    def pushes_dropped(self, count: int) -> None:
        self._dropped.inc(count)

    def queued_push_bytes(self, delta: int) -> None:
        self.queued_push_bytes_gauge.inc(delta)

    def slow_consumer_closed(self) -> None:
        self.slow_consumer_closes_total.inc()

    # Observer: backplane

    def backplane_connected(self, connected: bool) -> None:
        self.backplane_connected_gauge.set(1 if connected else 0)

    def backplane_dropped(self) -> None:
        self.backplane_dropped_total.inc()

    def backplane_published(self, seconds: float) -> None:
        self.backplane_publish_seconds.observe(seconds)

    def shutdown(self) -> None:
        if multiprocess_mode():
            from prometheus_client import multiprocess

            # This worker's live gauges stop counting; its counters stay in the sums.
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    # Exposition

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Return the metrics as `(body, content_type)`, in the format `accept` prefers.

        In multiprocess mode the figures are those of every worker; otherwise this
        router's registry.
        """
        registry = self.registry
        if multiprocess_mode():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type

    async def scrape(self, scope: Scope, send: ASGISendCallable) -> None:
        """Answer one HTTP request for the metrics: GET or HEAD, else 405."""
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"405 Method Not Allowed: GET the metrics.\n",
                           "text/plain; charset=utf-8", [(b"allow", b"GET, HEAD")])  # fmt: skip
            return
        accept = None
        headers: Any = scope.get("headers") or ()
        for key, value in headers:
            if key == b"accept":
                accept = value.decode("latin-1")
        # Collecting reads every worker's files in multiprocess mode: off the event loop.
        body, content_type = await asyncio.to_thread(self.exposition, accept)
        await _respond(send, 200, b"" if method == "HEAD" else body, content_type, [],
                       length=len(body))  # fmt: skip

    # Private methods

    def _duration(self, route: str) -> Any:
        child = self._durations.get(route)
        if child is None:
            child = self._durations[route] = self.request_duration_seconds.labels(route)
        return child


async def _respond(
    send: ASGISendCallable,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[bytes, bytes]],
    length: int | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body) if length is None else length).encode()),
                *headers,
            ],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
