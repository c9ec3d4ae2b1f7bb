"""Prometheus metrics: the observer's figures, their exposition, and bounded labels."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.typing import Origin

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.observe._observe import MALFORMED, PING, UNKNOWN
from observable_socket_asgi.observe.metrics import PrometheusMetrics
from tests.helpers import MS, TIMEOUT, Server, free_socket, request, running
from tests.metrics_helpers import Scrape, scrape
from tests.processes import run_hidden, stop
from tests.redis_servers import RedisServer


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


# Real uvicorn, real HTTP scrapes


def metrics_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}/metrics"


async def wait_for_scrape(url: str, check: Any) -> Scrape:
    """Scrape until `check(scrape)` holds (cleanup after a close is asynchronous)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            s = await asyncio.to_thread(scrape, url)
            if check(s):
                return s
            await asyncio.sleep(10 * MS)


def traffic_router(**options: Any) -> SocketRouter:
    router = SocketRouter(metrics_url="/metrics", **options)

    @router.route("ok")
    async def ok(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": payload}

    @router.route("boom")
    async def boom(ws: Any, headers: Any, payload: Any) -> Any:
        raise RuntimeError("handler failure")

    @router.route("slow", {"timeout": 50 * MS})
    async def slow(ws: Any, headers: Any, payload: Any) -> Any:
        await asyncio.sleep(TIMEOUT)

    @router.route("limited", {"rate_limit": (2, 3600.0)})
    async def limited(ws: Any, headers: Any, payload: Any) -> Any:
        return {}

    @router.route("join")
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        await ws.subscribe(payload)
        return {}

    @router.route("announce")
    async def announce(ws: Any, headers: Any, payload: Any) -> Any:
        await router.publish("feed", payload)
        return {}

    return router


async def exchange(ws: Any, frame: str, pushes: int = 0) -> dict[str, Any]:
    """Send a frame, read its reply (and `pushes` pushes), return the reply."""
    await ws.send(frame)
    reply = None
    for _ in range(pushes + 1):
        message = orjson.loads(await ws.recv())
        if message.get("route") == "feed":
            continue
        reply = message
    assert isinstance(reply, dict)
    return reply


async def test_exact_counts_after_known_traffic() -> None:
    """404s, 429s, 504s, 500s, malformed frames, PINGs, pushes and closes are counted exactly,
    scraped over HTTP from a real uvicorn and parsed with prometheus_client's parser."""
    router = traffic_router()
    with running(router) as server:
        url = metrics_url(server)
        async with asyncio.timeout(TIMEOUT):
            async with connect(server.url, compression=None) as ws:
                statuses = [
                    (await exchange(ws, request(route, 1, uuid=n)))["status"]
                    for n, route in enumerate(
                        ["ok", "ok", "ok", "boom", "slow", "limited", "limited", "limited",
                         "nope", "other/missing"]
                    )
                ]  # fmt: skip
                assert statuses == [200, 200, 200, 500, 504, 200, 200, 429, 404, 404]
                assert (await exchange(ws, "not json"))["status"] == 400
                pong = await exchange(ws, request("PING", None, uuid="p"))
                assert pong["route"] == "PONG"
                assert (await exchange(ws, request("join", "feed", uuid="j")))["status"] == 200
                for n in range(2):
                    await exchange(ws, request("announce", n, uuid=f"a{n}"), pushes=1)
                during = await asyncio.to_thread(scrape, url)
                assert during.value("connections_open") == 1
            async with connect(server.url, compression=None) as ws2:
                await ws2.close(4001, "custom")
        s = await wait_for_scrape(url, lambda s: s.value("connections_open") == 0)
    expected = {
        ("ok", 200): 3,
        ("boom", 500): 1,
        ("slow", 504): 1,
        ("limited", 200): 2,
        ("limited", 429): 1,
        (UNKNOWN, 404): 2,
        (MALFORMED, 400): 1,
        (PING, 200): 1,
        ("join", 200): 1,
        ("announce", 200): 2,
    }
    for (route, status), count in expected.items():
        assert s.value("requests_total", route=route, status=status) == count, (route, status)
    assert sum(
        value for (name, _), value in s.samples.items()
        if name == "observable_socket_requests_total"
    ) == sum(expected.values())  # fmt: skip
    assert s.value("request_duration_seconds_count", route="ok") == 3
    assert s.value("request_duration_seconds_count", route="slow") == 1
    assert s.value("request_duration_seconds_sum", route="slow") >= 0.05 * MS * 1000
    assert s.value("requests_in_flight") == 0
    assert s.value("connections_total", outcome="accepted") == 2
    assert s.value("disconnects_total", code=1000) == 1
    assert s.value("disconnects_total", code="other") == 1
    assert s.value("pushes_total", outcome="sent") == 2
    assert s.value("pushes_total", outcome="dropped") == 0
    assert s.value("queued_push_bytes") == 0
    assert s.value("backplane_connected") == 1


async def test_random_unknown_routes_add_no_series() -> None:
    """Random route names, junk frames and odd close codes leave the set of series unchanged."""
    import random

    rng = random.Random(1234)
    router = traffic_router()
    with running(router) as server:
        url = metrics_url(server)
        # One of each fixed label first, so that the series set is complete.
        async with asyncio.timeout(TIMEOUT), connect(server.url, compression=None) as ws:
            await exchange(ws, request("nope"))
            await exchange(ws, "{")
            await exchange(ws, request("PING"))
            await ws.close(4000)
        before = await wait_for_scrape(url, lambda s: s.value("connections_open") == 0)
        async with asyncio.timeout(TIMEOUT):
            for code in (4001, 4999, 3000):
                async with connect(server.url, compression=None) as ws:
                    for n in range(40):
                        name = "".join(rng.choice("abcxyz/:-_<>{}") for _ in range(12))
                        await exchange(ws, request(name, n, uuid=n))
                        await exchange(ws, f'{{"uuid":{n},"route":{n}}}')
                    await ws.close(code)
        after = await wait_for_scrape(url, lambda s: s.value("connections_open") == 0)
    assert after.series() == before.series()
    assert after.value("requests_total", route=UNKNOWN, status=404) == 1 + 120
    assert after.value("requests_total", route=MALFORMED, status=400) == 1 + 120
    assert after.value("disconnects_total", code="other") == 4


async def test_refusals_are_counted_by_reason() -> None:
    """Origin and capacity refusals are counted under their reason; they never count as open."""
    router = traffic_router(allowed_origins=["https://ok.example"], max_connections=1)
    with running(router) as server:
        url = metrics_url(server)
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(websockets.ConnectionClosed):
                async with connect(server.url, origin=Origin("https://evil.example")) as bad:
                    await bad.recv()
            async with connect(server.url, origin=Origin("https://ok.example")) as first:
                assert (await exchange(first, request("ok")))["status"] == 200
                # over capacity: refused before accept (503), never opened
                with pytest.raises(websockets.InvalidStatus):
                    async with connect(server.url, origin=Origin("https://ok.example")) as extra:
                        await extra.recv()
        s = await wait_for_scrape(url, lambda s: s.value("connections_open") == 0)
    assert s.value("connections_total", outcome="accepted") == 1
    assert s.value("connections_total", outcome="refused_origin") == 1
    assert s.value("connections_total", outcome="refused_capacity") == 1
    assert s.value("disconnects_total", code=1000) == 1  # refusals are not disconnects


async def test_slow_consumer_close_is_counted() -> None:
    """A client that stops reading its pushes is closed once, its queued pushes dropped."""
    router = traffic_router(max_queued_pushes=4)
    big = "x" * 256 * 1024
    with running(router) as server:
        url = metrics_url(server)
        async with asyncio.timeout(TIMEOUT):
            async with connect(server.url, max_queue=1, compression=None) as slow:
                await exchange(slow, request("join", "feed"))
                published = 0
                while not server.call(lambda: all(c.closed for c in router.connections)):
                    assert published < 400, "the slow consumer was never closed"
                    await publish_on(server, router, "feed", [published, big])
                    published += 1
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await slow.recv()
        s = await wait_for_scrape(url, lambda s: s.value("connections_open") == 0)
    assert s.value("slow_consumer_closes_total") == 1
    assert s.value("disconnects_total", code=1013) == 1
    sent, dropped = (
        s.value("pushes_total", outcome="sent"),
        s.value("pushes_total", outcome="dropped"),
    )
    assert dropped >= 1
    assert sent + dropped <= published
    assert s.value("queued_push_bytes") == 0


async def publish_on(server: Server, router: SocketRouter, *args: Any) -> None:
    assert server.loop is not None
    future = asyncio.run_coroutine_threadsafe(router.publish(*args), server.loop)
    await asyncio.wrap_future(future)


def test_metrics_endpoint_speaks_plain_http() -> None:
    """GET and HEAD answer; other methods get 405; other paths stay 426 (WebSocket only)."""
    router = traffic_router()
    with running(router) as server:
        url = metrics_url(server)
        head = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(head, timeout=TIMEOUT) as answer:
            assert answer.status == 200 and answer.read() == b""
            assert int(answer.headers["content-length"]) > 0
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(url, data=b"x"), timeout=TIMEOUT)
        info.value.close()
        assert info.value.code == 405 and info.value.headers["allow"] == "GET, HEAD"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + "/more", timeout=TIMEOUT)
        info.value.close()
        assert info.value.code == 426
        om = urllib.request.Request(url, headers={"accept": "application/openmetrics-text"})
        with urllib.request.urlopen(om, timeout=TIMEOUT) as answer:
            assert answer.headers["content-type"].startswith("application/openmetrics-text")


def test_router_metrics_option_is_checked() -> None:
    """metrics_url must be an absolute path."""
    with pytest.raises(ValueError, match="metrics_url"):
        SocketRouter(metrics_url="metrics")
    assert SocketRouter().metrics is None
    assert isinstance(SocketRouter(metrics_url="/m").metrics, PrometheusMetrics)


def test_core_does_not_import_prometheus_or_opentelemetry_when_off() -> None:
    """With metrics and tracing off, serving a request imports neither library."""
    out = run_hidden(
        (),
        """
        import asyncio, sys
        from observable_socket_asgi import SocketRouter
        from observable_socket_asgi.testing import TestClient

        router = SocketRouter()

        @router.route("r")
        async def r(ws, headers, payload):
            return {"payload": payload}

        async def main():
            async with TestClient(router) as client:
                assert (await client.request("r", 1)).payload == 1
                assert (await client.request("nope")).status == 404

        asyncio.run(main())
        bad = sorted(m for m in sys.modules
                     if m.split(".")[0] in ("prometheus_client", "opentelemetry")
                     or m in ("observable_socket_asgi.observe.metrics",
                              "observable_socket_asgi.observe.tracing"))
        print(bad)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# A Redis outage, with a real redis-server


@pytest.mark.redis
async def test_redis_outage_is_seen_in_the_backplane_metrics(redis_server: RedisServer) -> None:
    """Publishes are timed while Redis is up; with Redis killed the backplane reads 0 and a
    publish counts as dropped (its local subscriber still gets it); after a restart, 1 again."""
    from observable_socket_asgi.pubsub.redis_backplane import RedisBackplane

    backplane = RedisBackplane(redis_server.url, ping_interval=0.2, max_backoff=0.2)
    router = traffic_router(backplane=backplane)
    with running(router) as server:
        url = metrics_url(server)
        async with asyncio.timeout(TIMEOUT * 3), connect(server.url, compression=None) as ws:
            await exchange(ws, request("join", "feed"))
            await exchange(ws, request("announce", 1), pushes=1)
            up = await asyncio.to_thread(scrape, url)
            assert up.value("backplane_connected") == 1
            assert up.value("backplane_publish_seconds_count") == 1
            assert up.value("backplane_dropped_total") == 0

            redis_server.kill()
            await wait_for_scrape(url, lambda s: s.value("backplane_connected") == 0)
            await exchange(ws, request("announce", 2), pushes=1)  # still delivered here
            down = await asyncio.to_thread(scrape, url)
            assert down.value("backplane_dropped_total") == 1
            assert down.value("backplane_publish_seconds_count") == 1
            assert down.value("pushes_total", outcome="sent") == 2

            redis_server.start()
            back = await wait_for_scrape(url, lambda s: s.value("backplane_connected") == 1)
            assert back.value("backplane_dropped_total") == 1


# Two uvicorn workers, one scrape


def test_two_workers_scrape_adds_up_both(tmp_path: Any) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, two worker processes report both workers' requests and
    connections, whichever of them answers the scrape.

    Each worker listens on a socket of its own, so the test decides which worker serves
    which connection: with `--workers 2` on one socket the kernel may hand every connection
    to the same worker on a loaded machine, and the sum would prove nothing.
    """
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    root = Path(__file__).resolve().parent.parent
    socks = [free_socket(), free_socket()]
    uvicorn_command = [sys.executable, "-m", "uvicorn", "examples.observed:app"]
    uvicorn_command += ["--log-level", "warning"]
    procs = [
        subprocess.Popen(
            [*uvicorn_command, "--fd", str(sock.fileno())],
            cwd=root,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
            pass_fds=[sock.fileno()],
        )
        for sock in socks
    ]
    ports = [sock.getsockname()[1] for sock in socks]
    try:
        asyncio.run(_two_workers(ports))
    finally:
        for proc in procs:
            stop(proc, 30)
        for sock in socks:
            sock.close()


async def _two_workers(ports: list[int]) -> None:
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    async with asyncio.timeout(TIMEOUT * 6):
        for url in urls:  # each worker imports the app and starts
            while True:
                try:
                    await asyncio.to_thread(scrape, url)
                    break
                except OSError:
                    await asyncio.sleep(50 * MS)
        pids: dict[int, int] = {}
        connections = 0
        for port, count in zip(ports, (2, 3), strict=True):  # 2 connections to one, 3 to the other
            for _ in range(count):
                async with connect(f"ws://127.0.0.1:{port}/ws", compression=None) as ws:
                    connections += 1
                    for n in range(3):
                        reply = await exchange(ws, request("whoami", None, uuid=n))
                        pid = reply["payload"]["pid"]
                        pids[pid] = pids.get(pid, 0) + 1
        assert len(pids) == 2, pids  # two processes really served
        total = sum(pids.values())
        for url in urls * 3:  # several scrapes, from either worker: the same sums
            s = await wait_for_scrape(url, lambda s: s.value("connections_open") == 0)
            assert s.value("requests_total", route="whoami", status=200) == total, pids
            assert s.value("connections_total", outcome="accepted") == connections
            assert s.value("disconnects_total", code=1000) == connections
            assert s.value("request_duration_seconds_count", route="whoami") == total
            assert s.value("requests_in_flight") == 0


def test_multiprocess_variant_records_the_same_figures() -> None:
    """The same events give the same series through prometheus_client's own metric objects
    (what multiprocess mode writes to its files) as through the plain figures."""
    from prometheus_client import generate_latest

    from observable_socket_asgi.observe.metrics import MultiprocessMetrics

    plain, files = PrometheusMetrics(), MultiprocessMetrics()
    for m in (plain, files):
        m.connection_accepted()
        m.connection_accepted()
        m.connection_refused("capacity")
        m.connection_refused("unheard-of")
        m.connection_closed(1001)
        m.connection_closed(4444)
        m.request_finished(m.request_started("r", {}, time.perf_counter()), "r", 201)
        m.request_finished(m.request_started("r", {}, time.perf_counter()), "r", None)
        m.answered(UNKNOWN, 404, time.perf_counter())
        m.push_sent()
        m.pushes_dropped(2)
        m.queued_push_bytes(7)
        m.slow_consumer_closed()
        m.backplane_connected(False)
        m.backplane_dropped()
        m.backplane_published(0.01)
    a = Scrape(plain.exposition()[0].decode())
    b = Scrape(generate_latest(files.registry).decode())

    # Durations differ by nature; compare every count and every other value.
    def comparable(s: Scrape) -> dict[Any, float]:
        return {
            key: value
            for key, value in s.samples.items()
            if not key[0].endswith(("_sum", "_created")) and "_bucket" not in key[0]
        }

    assert comparable(a) == comparable(b)
    assert a.value("requests_total", route="r", status=201) == 1
    assert a.value("requests_in_flight") == 0


def test_metrics_mounted_in_fastapi_with_the_adapter() -> None:
    """Through fastapi_adapter the router records too; `router.metrics` mounts as an app."""
    from fastapi import FastAPI

    import fastapi_adapter

    router = fastapi_adapter.SocketRouter(metrics_url="/metrics")

    @router.route("ok")
    async def ok(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": payload}

    app = FastAPI()
    app.websocket("/ws")(router)
    assert router.metrics is not None
    app.mount("/metrics", cast(Any, router.metrics))

    async def talk(url: str) -> None:
        async with asyncio.timeout(TIMEOUT), connect(url, compression=None) as ws:
            assert (await exchange(ws, request("ok", 1)))["status"] == 200
            assert (await exchange(ws, request("missing")))["status"] == 404

    with running(app) as server:
        asyncio.run(talk(f"{server.url}/ws"))
        s = scrape(f"http://127.0.0.1:{server.port}/metrics/")
        assert s.value("requests_total", route="ok", status=200) == 1
        assert s.value("requests_total", route=UNKNOWN, status=404) == 1
        assert s.value("connections_total", outcome="accepted") == 1


async def test_request_cancelled_by_a_disconnect_is_not_counted() -> None:
    """A client that leaves mid-request: in-flight returns to 0, the request has no reply to
    count, and the connection's close code is counted."""
    from tests.helpers import Conversation

    router = SocketRouter(metrics_url="/metrics")
    entered = asyncio.Event()

    @router.route("hang")
    async def hang(ws: Any, headers: Any, payload: Any) -> Any:
        entered.set()
        await asyncio.sleep(TIMEOUT * 10)

    conv = Conversation(router)
    await conv.connect()
    await conv.send(request("hang"))
    async with asyncio.timeout(TIMEOUT):
        await entered.wait()
    assert router.metrics is not None
    during = Scrape(router.metrics.exposition()[0].decode())
    assert during.value("requests_in_flight") == 1
    await conv.disconnect(1001)
    s = Scrape(router.metrics.exposition()[0].decode())
    assert s.value("requests_in_flight") == 0
    assert not s.has("requests_total", route="hang", status=200)
    assert s.label_values("requests_total", "route") == set()
    assert s.value("disconnects_total", code=1001) == 1
    assert s.value("connections_open") == 0


# Push accounting, with a writer held busy


class HeldWriter:
    """An ASGI connection whose `websocket.send` waits until released: pushes queue up."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.gate = asyncio.Event()
        self.sent: list[Any] = []
        self.closes: list[int] = []

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await self.gate.wait()
            self.sent.append(orjson.loads(message["text"])["payload"])
        elif message["type"] == "websocket.close":
            self.closes.append(message["code"])


async def serve_held(router: SocketRouter, peer: HeldWriter) -> tuple[asyncio.Task[None], Any]:
    from tests.helpers import wait_until, ws_scope

    await peer.inbox.put({"type": "websocket.connect"})
    task = asyncio.create_task(router(ws_scope(), peer.receive, peer.send))  # type: ignore[arg-type]
    await wait_until(lambda: len(router.connections) == 1)
    (conn,) = router.connections
    return task, conn


def metrics_of(router: SocketRouter) -> Scrape:
    assert router.metrics is not None
    return Scrape(router.metrics.exposition()[0].decode())


async def test_drop_oldest_and_queued_bytes_are_counted() -> None:
    """Behind a busy writer, pushes are queued (their bytes counted), the oldest dropped past
    the bound; once the writer moves, the rest are sent and the queue reads 0 bytes."""
    from observable_socket_asgi.envelope import encode_push
    from tests.helpers import wait_until

    router = SocketRouter(metrics_url="/m", max_queued_pushes=2, slow_consumer="drop_oldest")
    peer = HeldWriter()
    task, conn = await serve_held(router, peer)
    frames = [encode_push("t", n) for n in range(5)]
    first = asyncio.create_task(conn.send_frame(frames[0]))  # becomes the writer, held
    await asyncio.sleep(0)
    for frame in frames[1:]:
        await conn.send_frame(frame)  # queued behind it; past 2, the oldest goes
    held = metrics_of(router)
    assert held.value("pushes_total", outcome="dropped") == 2
    assert held.value("pushes_total", outcome="sent") == 0
    assert held.value("queued_push_bytes") == len(frames[3]) + len(frames[4])
    peer.gate.set()
    await first
    await wait_until(lambda: len(peer.sent) == 3)
    assert peer.sent == [0, 3, 4]
    done = metrics_of(router)
    assert done.value("pushes_total", outcome="sent") == 3
    assert done.value("queued_push_bytes") == 0
    await peer.inbox.put({"type": "websocket.disconnect", "code": 1000})
    await task


async def test_slow_consumer_close_drops_the_queue_and_the_new_push() -> None:
    """Past the bound with the close policy: every queued push and the new one count as
    dropped, one slow-consumer close is counted, and the connection ends with 1013."""
    from observable_socket_asgi.envelope import encode_push
    from tests.helpers import wait_until

    router = SocketRouter(metrics_url="/m", max_queued_pushes=2, close_timeout=50 * MS)
    peer = HeldWriter()
    task, conn = await serve_held(router, peer)
    frames = [encode_push("t", n) for n in range(4)]
    first = asyncio.create_task(conn.send_frame(frames[0]))
    await asyncio.sleep(0)
    for frame in frames[1:]:
        await conn.send_frame(frame)
    s = metrics_of(router)
    assert s.value("slow_consumer_closes_total") == 1
    assert s.value("pushes_total", outcome="dropped") == 3  # two queued, and the fourth
    assert s.value("queued_push_bytes") == 0
    await wait_until(lambda: peer.closes == [1013])
    peer.gate.set()
    await first
    await peer.inbox.put({"type": "websocket.disconnect", "code": 1013})
    await task
    end = metrics_of(router)
    assert end.value("pushes_total", outcome="sent") == 1
    assert end.value("disconnects_total", code=1013) == 1
    assert end.value("connections_open") == 0
