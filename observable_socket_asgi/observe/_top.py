"""The live view's pure part: a scrape becomes a `Snapshot`, two snapshots become a screen.

`observable-socket top URL` (in `cli.py`) fetches the router's metrics every second and
prints `render(previous, current)`; everything that needs no network or clock is here, so it
is tested on text alone. Rates and percentiles are over the last interval, as Prometheus's
`rate()` and `histogram_quantile()` would compute them; the first screen, with no previous
scrape, shows totals and percentiles since the server started.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["RouteStats", "Snapshot", "parse", "quantile", "render"]

_P = "observable_socket_"


@dataclass(slots=True)
class RouteStats:
    """One route label's cumulative figures in one scrape."""

    #: requests answered, by status
    by_status: dict[int, float] = field(default_factory=dict)
    #: `(upper bound, cumulative count)` of the duration histogram, ascending
    buckets: list[tuple[float, float]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.by_status.values())

    def count(self, low: int, high: int) -> float:
        return sum(n for status, n in self.by_status.items() if low <= status < high)


@dataclass(slots=True)
class Snapshot:
    """What one scrape of the metrics says, summed over workers; `at` is when (seconds)."""

    at: float
    connections_open: float = 0.0
    in_flight: float = 0.0
    queued_push_bytes: float = 0.0
    pushes_sent: float = 0.0
    pushes_dropped: float = 0.0
    slow_consumer_closes: float = 0.0
    backplane_connected: float | None = None
    backplane_dropped: float = 0.0
    refused: float = 0.0
    routes: dict[str, RouteStats] = field(default_factory=dict)


def parse(text: str, at: float) -> Snapshot:
    """Read the router's families from Prometheus text; other families are ignored.

    Raises:
        ValueError: the text is not in the Prometheus text format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    snap = Snapshot(at=at)
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(_P):
            continue
        for sample in family.samples:
            name = sample.name[len(_P) :] if sample.name.startswith(_P) else sample.name
            labels, value = sample.labels, sample.value
            if name == "connections_open":
                snap.connections_open += value
            elif name == "requests_in_flight":
                snap.in_flight += value
            elif name == "queued_push_bytes":
                snap.queued_push_bytes += value
            elif name == "pushes_total":
                if labels.get("outcome") == "sent":
                    snap.pushes_sent += value
                else:
                    snap.pushes_dropped += value
            elif name == "slow_consumer_closes_total":
                snap.slow_consumer_closes += value
            elif name == "backplane_connected":
                # Several samples (one per worker): connected only if every one is.
                current = snap.backplane_connected
                snap.backplane_connected = value if current is None else min(current, value)
            elif name == "backplane_dropped_total":
                snap.backplane_dropped += value
            elif name == "connections_total":
                if labels.get("outcome", "").startswith("refused"):
                    snap.refused += value
            elif name == "requests_total":
                stats = snap.routes.setdefault(labels["route"], RouteStats())
                status = int(labels["status"])
                stats.by_status[status] = stats.by_status.get(status, 0.0) + value
            elif name == "request_duration_seconds_bucket":
                per_route = buckets.setdefault(labels["route"], {})
                bound = float(labels["le"])
                per_route[bound] = per_route.get(bound, 0.0) + value
    for route, per_route in buckets.items():
        stats = snap.routes.setdefault(route, RouteStats())
        stats.buckets = sorted(per_route.items())
    return snap


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Estimate the `q` quantile from cumulative `(upper bound, count)` buckets.

    Linear interpolation inside the bucket, as `histogram_quantile()` does; a quantile in
    the `+Inf` bucket is reported as the highest finite bound. None when there is no count.
    """
    items = sorted(buckets)
    if not items or items[-1][1] <= 0:
        return None
    rank = q * items[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in items:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower  # pragma: no cover - the last bucket always holds the rank


def _delta(
    now: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    old = dict(before)
    return [(bound, count - old.get(bound, 0.0)) for bound, count in now]


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _rate(now: float, before: float | None, seconds: float) -> str:
    if before is None or seconds <= 0:
        return "-"
    return f"{max(now - before, 0.0) / seconds:.1f}"


def render(previous: Snapshot | None, current: Snapshot, source: str = "") -> str:
    """The screen for `current`, with rates over the time since `previous` (if any)."""
    seconds = current.at - previous.at if previous is not None else 0.0
    if current.backplane_connected is None:
        backplane = "no backplane figures"
    else:
        backplane = "connected" if current.backplane_connected >= 1 else "DISCONNECTED"
    lines = [
        f"observable-socket top  {source}".rstrip(),
        f"connections {current.connections_open:.0f} open, {current.refused:.0f} refused"
        f"   in flight {current.in_flight:.0f}"
        f"   queued pushes {_bytes(current.queued_push_bytes)}",
        "pushes "
        f"{_rate(current.pushes_sent, None if previous is None else previous.pushes_sent, seconds)}"
        "/s sent, "
        f"{current.pushes_dropped:.0f} dropped"
        f"   slow-consumer closes {current.slow_consumer_closes:.0f}",
        f"backplane {backplane}, {current.backplane_dropped:.0f} publishes dropped",
        "",
        f"{'ROUTE':<28} {'REQ/S':>9} {'4XX/S':>8} {'5XX/S':>8} {'P50':>9} {'P99':>9} {'TOTAL':>10}",
    ]
    rows = []
    for name, stats in current.routes.items():
        old = previous.routes.get(name) if previous is not None else None
        if old is None and previous is not None:
            old = RouteStats()
        buckets = stats.buckets if old is None else _delta(stats.buckets, old.buckets)
        total = stats.total
        old_total = None if old is None else old.total
        old_4xx = None if old is None else old.count(400, 500)
        old_5xx = None if old is None else old.count(500, 600)
        rows.append(
            (
                total - (old.total if old is not None else 0.0),
                name,
                _rate(total, old_total, seconds),
                _rate(stats.count(400, 500), old_4xx, seconds),
                _rate(stats.count(500, 600), old_5xx, seconds),
                _ms(quantile(0.5, buckets)),
                _ms(quantile(0.99, buckets)),
                f"{total:.0f}",
            )
        )
    rows.sort(key=lambda row: (-row[0], row[1]))
    for _, name, rate, r4, r5, p50, p99, total_text in rows:
        shown = name if len(name) <= 28 else name[:27] + "…"
        lines.append(f"{shown:<28} {rate:>9} {r4:>8} {r5:>8} {p50:>9} {p99:>9} {total_text:>10}")
    if not rows:
        lines.append("(no requests yet)")
    return "\n".join(lines) + "\n"
