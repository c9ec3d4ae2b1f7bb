"""The live view's pure part: parsing a scrape, percentiles from buckets, and the screen."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time

import orjson
import pytest
from websockets.asyncio.client import connect

pytest.importorskip("prometheus_client")

from observable_socket_asgi.observe import _top
from observable_socket_asgi.observe._observe import UNKNOWN
from observable_socket_asgi.observe.metrics import PrometheusMetrics
from tests.helpers import MS, TIMEOUT, refusing_port, request, running


def text_of(metrics: PrometheusMetrics) -> str:
    return metrics.exposition()[0].decode()


def test_quantile_interpolates_like_histogram_quantile() -> None:
    """Linear inside the bucket; the +Inf bucket reports the highest finite bound."""
    buckets = [(0.001, 50.0), (0.01, 90.0), (0.1, 100.0), (math.inf, 100.0)]
    assert _top.quantile(0.5, buckets) == pytest.approx(0.001)
    assert _top.quantile(0.7, buckets) == pytest.approx(0.001 + 0.009 * 20 / 40)
    assert _top.quantile(0.99, buckets) == pytest.approx(0.01 + 0.09 * 9 / 10)
    assert _top.quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert _top.quantile(0.5, []) is None
    assert _top.quantile(0.99, [(0.1, 1.0), (math.inf, 10.0)]) == pytest.approx(0.1)


def test_parse_reads_the_routers_families() -> None:
    """A real exposition is read back into a snapshot, summed over series."""
    m = PrometheusMetrics()
    for _ in range(3):
        m.connection_accepted()
    m.connection_refused("capacity")
    m.request_finished(m.request_started("a", {}, time.perf_counter()), "a", 200)
    m.answered("a", 500, time.perf_counter())
    m.answered(UNKNOWN, 404, time.perf_counter())
    m.request_started("a", {}, time.perf_counter())  # still in flight
    m.queued_push_bytes(2048)
    m.push_sent()
    m.pushes_dropped(2)
    m.backplane_connected(False)
    snap = _top.parse(text_of(m) + "other_metric_total 5\n", at=10.0)
    assert snap.connections_open == 3
    assert snap.refused == 1
    assert snap.in_flight == 1
    assert snap.queued_push_bytes == 2048
    assert (snap.pushes_sent, snap.pushes_dropped) == (1, 2)
    assert snap.backplane_connected == 0
    assert snap.routes["a"].by_status == {200: 1, 500: 1}
    assert snap.routes[UNKNOWN].total == 1
    assert snap.routes["a"].buckets[-1] == (math.inf, 2.0)


def test_parse_rejects_what_is_not_prometheus_text() -> None:
    """Garbage is a ValueError, which the command shows instead of crashing."""
    with pytest.raises(ValueError):
        _top.parse("<html>not metrics</html>\n", at=0.0)


def test_render_shows_rates_over_the_interval() -> None:
    """Two scrapes two seconds apart: per-route rates are deltas over them, sorted by rate."""
    m = PrometheusMetrics()
    before = _top.parse(text_of(m), at=100.0)
    for _ in range(10):
        m.answered("fast", 200, time.perf_counter())
    for _ in range(4):
        m.answered("slow", 504, time.perf_counter())
    m.answered(UNKNOWN, 404, time.perf_counter())
    m.connection_accepted()
    after = _top.parse(text_of(m), at=102.0)
    screen = _top.render(before, after, "http://x/metrics")
    lines = screen.splitlines()
    assert lines[0] == "observable-socket top  http://x/metrics"
    assert "connections 1 open" in lines[1]
    assert "backplane connected" in screen
    table = lines[lines.index(next(line for line in lines if line.startswith("ROUTE"))) + 1 :]
    assert table[0].split()[:4] == ["fast", "5.0", "0.0", "0.0"]
    assert table[1].split()[:4] == ["slow", "2.0", "0.0", "2.0"]
    assert table[2].split()[:4] == [UNKNOWN, "0.5", "0.5", "0.0"]
    assert table[0].split()[-1] == "10"


def test_render_first_screen_and_empty_router() -> None:
    """Without a previous scrape, rates are '-'; with no requests the table says so."""
    m = PrometheusMetrics()
    m.backplane_connected(False)
    screen = _top.render(None, _top.parse(text_of(m), at=0.0))
    assert "backplane DISCONNECTED" in screen
    assert "(no requests yet)" not in screen  # the fixed labels are listed at zero
    m.answered("r", 200, time.perf_counter())
    first = _top.render(None, _top.parse(text_of(m), at=0.0))
    row = next(line for line in first.splitlines() if line.startswith("r "))
    assert row.split()[1] == "-"
    assert _top.render(None, _top.Snapshot(at=0.0)).rstrip().endswith("(no requests yet)")


# The command against a real server


def run_top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observable_socket_asgi", "top", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _traffic(url: str) -> None:
    async with asyncio.timeout(TIMEOUT), connect(url, compression=None) as ws:
        for n in range(5):
            await ws.send(request("math/sum", [1, n], uuid=n))
            assert orjson.loads(await ws.recv())["status"] == 200
        await ws.send(request("nope"))
        await ws.recv()


def test_top_shows_a_live_router() -> None:
    """`observable-socket top URL` scrapes the router and shows its routes and connections."""
    from examples.observed import app

    with running(app) as server:
        asyncio.run(_traffic(server.url))
        url = f"http://127.0.0.1:{server.port}/metrics"
        done = run_top(url, "--count", "2", "--interval", str(20 * MS))
    assert done.returncode == 0, done.stderr
    screens = done.stdout.split("observable-socket top")
    assert len(screens) == 3  # two screens (no terminal: no clearing, one after the other)
    last = screens[-1]
    row = next(line for line in last.splitlines() if line.startswith("math/sum"))
    assert row.split()[1] == "0.0"  # no traffic between the two scrapes
    assert row.split()[-1] == "5"
    assert "connections 0 open" in last
    unknown = next(line for line in last.splitlines() if line.startswith(UNKNOWN))
    assert unknown.split()[-1] == "1"


def test_top_reports_an_unreachable_server() -> None:
    """No server: the screen says why, and --count ends with exit status 3."""
    with refusing_port() as port:
        done = run_top(f"http://127.0.0.1:{port}/metrics", "--count", "1", "--timeout", "2")
    assert done.returncode == 3
    assert "cannot read the metrics" in done.stdout
    bad = run_top("ws://127.0.0.1:1/metrics", "--count", "1")
    assert bad.returncode == 2 and "http://" in bad.stderr


def test_top_on_a_path_without_metrics_says_so_once() -> None:
    """A router without metrics_url answers a GET with 426: top says once what that means
    and exits 2, instead of showing "HTTP Error 426" screen after screen."""
    from observable_socket_asgi import SocketRouter

    with running(SocketRouter()) as server:
        done = run_top(f"http://127.0.0.1:{server.port}/ws", "--count", "3")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.count("426") == 1
    assert "metrics_url" in done.stderr
