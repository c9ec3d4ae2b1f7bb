"""The benchmark scripts still run: they import, parse their arguments, their load
generator speaks both protocols, the report's arithmetic is right, and one scenario runs
end to end with tiny counts. Nothing here times anything or judges a number."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

MODULES = [
    "bench._harness",
    "bench.apps",
    "bench.explorer",
    "bench.fanout",
    "bench.conn_memory",
    "bench.growth",
    "bench.handshake",
    "bench.head_of_line",
    "bench.history_cost",
    "bench.hooks_cost",
    "bench.idle_memory",
    "bench.idle_scale",
    "bench.instructions",
    "bench.loadgen",
    "bench.observability",
    "bench.profile",
    "bench.report",
    "bench.run_all",
    "bench.scale_out",
    "bench.served_instructions",
    "bench.server",
    "bench.slow_consumer",
    "bench.throughput",
    "bench.versus",
    "bench.write_cost",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} says what it measures"


def test_scenarios_parse_their_arguments() -> None:
    from bench import (
        fanout,
        growth,
        handshake,
        idle_scale,
        instructions,
        served_instructions,
        throughput,
        versus,
    )
    from bench._harness import parse_configs

    args = fanout.parser().parse_args(["--quick", "--subscribers", "7", "--contenders", "bare"])
    assert (args.quick, args.subscribers, args.contenders) == (True, 7, "bare")
    assert handshake.parser().parse_args(["--concurrency", "3"]).concurrency == 3
    picked = throughput.parser().parse_args(["--contenders", "bare", "--configs", "16x16"])
    assert (picked.contenders, picked.configs) == ("bare", "16x16")
    assert growth.parser().parse_args(["--parts", "cpu"]).parts == "cpu"
    assert instructions.parser().parse_args(["echo", "--contenders", "router"]).workloads == [
        "echo"
    ]
    scale = idle_scale.parser().parse_args(["--counts", "10,20", "--window", "2"])
    assert (scale.counts, scale.window, scale.heartbeat) == ("10,20", 2.0, 60.0)
    assert scale.server == "uvicorn"
    assert idle_scale.parser().parse_args(["--server", "granian"]).server == "granian"
    served = served_instructions.parser().parse_args(["--configs", "4x2", "--count", "9"])
    assert (served.configs, served.count, served.fanout) == ("4x2", 9, "bare,router")
    # counted without uvicorn's clock-driven pings, unless asked for
    assert served_instructions.server_env({})["BENCH_WS_PING_INTERVAL"] == "off"
    kept = served_instructions.server_env({"BENCH_WS_PING_INTERVAL": "20"})
    assert (kept["BENCH_WS_PING_INTERVAL"], kept["PYTHONHASHSEED"]) == ("20", "0")
    ran = versus.parser().parse_args(
        ["--adapter", "--fanout", "--configs", "4x2", "--out", "x.json"]
    )
    assert (ran.adapter, ran.fanout, ran.out) == (True, True, Path("x.json"))
    assert parse_configs(ran.configs) == [(4, 2)]
    assert parse_configs(versus.parser().parse_args([]).configs) == [(16, 16), (256, 1)]
    assert parse_configs("") == []
    with pytest.raises(SystemExit):
        instructions.main(["nonsense"])
    with pytest.raises(SystemExit):
        fanout.parser().parse_args(["--subscribers", "many"])
    with pytest.raises(SystemExit):
        growth.main(["--parts", "nonsense"])


def test_every_contender_builds() -> None:
    from bench.apps import CONTENDERS, build

    for name in (*CONTENDERS, "router_drop", "router_access", "channels"):
        if name == "original" and importlib.util.find_spec("fastapi_observable_socket") is None:
            continue  # the original package is installed by scripts/bench only
        if name == "channels" and importlib.util.find_spec("channels") is None:
            continue  # so is Django Channels
        assert callable(build(name)), name


def test_quick_mode_shrinks_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench._harness import env_int, env_ints

    monkeypatch.delenv("BENCH_FANOUT_SUBSCRIBERS", raising=False)
    monkeypatch.setenv("BENCH_QUICK", "1")
    assert env_int("BENCH_FANOUT_SUBSCRIBERS", 1000, 20) == 20
    monkeypatch.setenv("BENCH_FANOUT_SUBSCRIBERS", "50")
    assert env_int("BENCH_FANOUT_SUBSCRIBERS", 1000, 20) == 50
    monkeypatch.setenv("BENCH_QUICK", "0")
    monkeypatch.delenv("BENCH_FANOUT_SUBSCRIBERS")
    assert env_int("BENCH_FANOUT_SUBSCRIBERS", 1000, 20) == 1000
    monkeypatch.setenv("BENCH_GROWTH_CONNS", "1, 16,256")
    assert env_ints("BENCH_GROWTH_CONNS", [1], [2]) == [1, 16, 256]


def test_codecs_frame_and_parse() -> None:
    from bench.loadgen import Codec, SocketIOCodec

    envelope = Codec()
    frame = json.loads(envelope.request(7, "echo"))
    assert frame == {
        "uuid": 7,
        "route": "echo",
        "headers": {"token": "abc"},
        "payload": [1, 2, 3, 4],
        "status": 200,
    }
    assert envelope.parse(b'{"uuid":7,"status":404,"headers":{},"payload":null}') == (
        "reply",
        7,
        404,
    )
    assert envelope.parse(b'{"uuid":"s-1","route":"fan","status":200}')[0] == "push"
    pong = b'{"uuid":"p-1","route":"PONG","status":200,"headers":{},"payload":null}'
    assert envelope.parse(pong) == ("reply", "p-1", 200)  # a PONG answers its PING

    sio = SocketIOCodec()
    raw = sio.request(12, "fanout", b'{"count":3}')
    assert raw.startswith(b"4212[")
    event, data = json.loads(raw[4:])
    assert (event, data["uuid"], data["payload"]) == ("fanout", 12, {"count": 3})
    assert sio.parse(b'4312[{"uuid":12,"status":200}]') == ("reply", 12, 200)
    assert sio.parse(b'42["push",{}]')[0] == "push"
    assert sio.parse(b'0{"sid":"x"}')[0] == "control"


def test_report_fits_and_ratios() -> None:
    from bench import report

    intercept, slope = report._fit([10.0, 100.0, 1000.0], [3.0, 21.0, 201.0])
    assert slope == pytest.approx(0.2)
    assert intercept == pytest.approx(1.0)
    by = {0: {"bare": 2.0, "router": 4.0}, 1: {"bare": 3.0, "router": 4.0}}
    # bare's time over the router's, per repeat: 0.5 and 0.75
    assert report._pair(by, "router", "bare", invert=True) == pytest.approx(0.625)
    fan = {
        "subscribers": 10,
        "pushes": 2,
        "rounds": 1,
        "repeats": 1,
        "runs": [
            {
                "contender": name,
                "repeat": 0,
                "median_s": seconds,
                "pushes_per_s": 20 / seconds,
                "server_us_per_frame": us,
            }
            for name, seconds, us in [
                ("bare", 1.0, 5.0),
                ("router", 2.0, 10.0),
                ("router_redis", 4.0, 10.0),
                ("socketio", 8.0, 40.0),
            ]
        ],
    }
    text = "\n".join(report.fanout_section(fan, {}))
    assert "| router | 2000 | 10 | 0.50 | 10.0 | 0.50 |" in text
    assert "router over python-socketio: 4.00 x by time" in text
    assert "Redis backplane over in-memory: 0.50 by time" in text
    targets = "\n".join(report.targets_section({"fanout": fan}))
    assert "| fan-out >= 4 x python-socketio | 4.00 by time" in targets
    assert targets.count("**missed**") == 1  # 0.5 x bare by time and by CPU
    # Redis: half the in-memory speed by time, the same CPU per push
    assert "| 0.50 by time (by server CPU per push: 1.00) | missed by rate, met by CPU |" in targets


@pytest.mark.parametrize("workload", ["echo", "echo_wait", "ping", "fanout", "handshake"])
def test_instruction_workloads_serve_every_unit(workload: str) -> None:
    """The in-process drivers callgrind counts really serve what they claim (no valgrind)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--run", workload, "router", "7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    units = json.loads(proc.stdout.strip().splitlines()[-1])["units"]
    from bench.instructions import SUBSCRIBERS

    assert units == (7 * SUBSCRIBERS if workload == "fanout" else 7)


def _stepwise(spec: dict[str, Any]) -> list[Any]:
    """Run a stepwise load-generator mode against a served router, answering both of its
    waits; return the lines it printed, parsed."""
    from bench._harness import Server

    server = Server("router")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", json.dumps({**spec, "url": server.url})],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = proc.communicate("\n\n", timeout=60)
    finally:
        server.stop()
    return [json.loads(line) for line in out.strip().splitlines()]


@pytest.mark.parametrize("route", ["echo", "PING"])
def test_counted_load_sends_exactly_its_count(route: str) -> None:
    """The load generator's `counted` mode (what bench.served_instructions counts between
    its two lines) has exactly `count` requests answered, against a real served router;
    PINGs too, each answered by its PONG."""
    lines = _stepwise(
        {
            "mode": "counted",
            "conns": 3,
            "inflight": 4,
            "warmup_count": 5,
            "count": 50,
            "route": route,
            "proto": "envelope",
        }
    )
    assert lines == [{"ready": True}, {"done": 50}, {"count": 50, "errors": 0}]


def test_stepwise_fanout_announces_its_round() -> None:
    """The load generator's stepwise fan-out (what bench.served_instructions counts): the
    timed round is announced, closed with the frames delivered, and really delivered."""
    lines = _stepwise(
        {
            "mode": "fanout",
            "subscribers": 3,
            "pushes": 4,
            "rounds": 1,
            "stepwise": True,
            "proto": "envelope",
        }
    )
    assert lines[:2] == [{"ready": 1}, {"done": 12}]
    assert len(lines[2]["seconds"]) == 1 and lines[2]["median_s"] > 0


def test_fanout_runs_end_to_end(tmp_path: Path) -> None:
    """A real smoke run: servers, the load generator, every fan-out contender but Redis."""
    env = {**os.environ, "BENCH_RESULTS": str(tmp_path), "BENCH_QUICK": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.fanout",
            "--quick",
            "--contenders",
            "bare,router,socketio",
            "--subscribers",
            "5",
            "--pushes",
            "3",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "fanout.json").read_text())
    assert sorted(r["contender"] for r in data["runs"]) == ["bare", "router", "socketio"]
    assert not data["missing"]
    for run in data["runs"]:
        assert run["subscribers"] == 5 and run["pushes"] == 3
        assert len(run["seconds"]) == 1 and run["median_s"] > 0


def test_idle_scale_runs_end_to_end(tmp_path: Path) -> None:
    """A real smoke run of the idle-connections scenario: two load-generator processes from
    their own source addresses hold the connections, every heartbeat is answered, and the
    Markdown table is written. (Under Granian the same run takes as long again; what differs,
    the server's worker process, is checked on its own below.)"""
    env = {**os.environ, "BENCH_RESULTS": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.idle_scale", "--quick", "--contenders", "bare,router"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "idle_scale.json").read_text())
    assert [run["contender"] for run in data["runs"]] == ["bare", "router"]
    for run in data["runs"]:
        assert [step["n"] for step in run["steps"]] == [10, 30]
        for step in run["steps"]:
            assert step["beats_sent"] > 0
            assert step["beats_answered"] == step["beats_sent"]
            assert step["lost"] == 0
            assert step["rss_kib"] > 0 and step["accepted_per_s"] > 0
    assert "router's own share" in (tmp_path / "idle_scale.md").read_text()


def test_a_granian_server_is_measured_with_its_worker() -> None:
    """Granian serves from a worker process: the harness counts the server's memory and CPU
    over the process and its worker, or the per-connection figures would read as zero."""
    from bench._harness import Server

    server = Server("bare", env={"BENCH_SERVER": "granian"})
    try:
        pids = server.pids()
        assert len(pids) == 2 and pids[0] == server.proc.pid, pids
        with open(f"/proc/{pids[1]}/statm") as f:
            worker_kib = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        assert server.rss_kib() > worker_kib > 0
    finally:
        server.stop()


def test_held_connections_come_from_their_source_address() -> None:
    """The `hold` mode opens its connections from the loopback address it is given (how
    100,000 sockets find enough ports) and answers the commands it documents."""
    from bench._harness import Server

    server = Server("router")
    try:
        spec = {"mode": "hold", "url": server.url, "source": "127.0.0.23", "concurrency": 4}
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        port = f":{server.port}"
        proc.stdin.write('{"open": 5}\n')
        proc.stdin.flush()
        opened = json.loads(proc.stdout.readline())
        peers = subprocess.run(
            # another copy of the suite may hold its own: count those to this server only
            ["ss", "-Htn", "state", "established", "src", "127.0.0.23", "dport", "=", port],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out, _ = proc.communicate('{"beat": 200, "seconds": 0.1}\n{"quit": true}\n', timeout=60)
    finally:
        server.stop()
    assert opened["open"] == 5 and opened["errors"] == 0
    assert len(peers.strip().splitlines()) == 5
    beat, closed = (json.loads(line) for line in out.strip().splitlines())
    assert beat["sent"] == 20 and beat["answered"] == 20
    assert closed == {"closed": 5}


async def test_starlette_contender_answers_like_the_others() -> None:
    """The hand-written Starlette endpoint answers echo with the payload, PING with PONG,
    one frame per request, and returns when the client leaves."""
    from bench.apps import build
    from tests.helpers import conversation, request

    async with conversation(build("starlette")) as conv:
        assert await conv.ask(request("echo", [1, 2], uuid=7)) == {
            "uuid": 7,
            "status": 200,
            "headers": {},
            "payload": [1, 2],
        }
        assert await conv.ask(request("PING", {}, uuid="p")) == {
            "uuid": "p",
            "route": "PONG",
            "status": 200,
            "headers": {},
            "payload": None,
        }
        assert await conv.nothing()


def test_versus_pairs_ratios_within_each_repeat() -> None:
    """Each ratio divides by the baseline of the same repeat and configuration; the cost
    ratio is inverted (the baseline's CPU over the subject's); contenders come in report order."""
    from bench import versus

    rates = {
        ("16x16", 0): {"bare": 100.0, "starlette": 80.0, "router": 90.0},
        ("16x16", 1): {"bare": 50.0, "starlette": 40.0, "router": 60.0},
        ("256x1", 0): {"bare": 10.0, "starlette": 10.0, "router": 5.0},
    }
    runs = [
        {
            "config": config,
            "repeat": repeat,
            "contender": name,
            "rate": rate,
            "server_us_per_msg": 1000.0 / rate,
            "loadavg": 1.0 + repeat,
        }
        for (config, repeat), by in rates.items()
        for name, rate in by.items()
    ]
    summary = versus.summarise(
        runs, "config", "rate", "server_us_per_msg", ["router"], ["starlette", "bare"]
    )
    assert list(summary) == ["16x16", "256x1"]
    assert list(summary["16x16"]["contenders"]) == ["bare", "starlette", "router"]
    first = {(r["subject"], r["baseline"]): r for r in summary["16x16"]["ratios"]}
    # 90/80 and 60/40: median 1.3125, range 1.125-1.5; by CPU the same, inverted twice
    vs_starlette = first[("router", "starlette")]
    assert vs_starlette["by_rate"]["median"] == pytest.approx(1.3125)
    assert (vs_starlette["by_rate"]["min"], vs_starlette["by_rate"]["max"]) == (1.125, 1.5)
    assert vs_starlette["by_cost"]["median"] == pytest.approx(1.3125)
    assert first[("router", "bare")]["by_rate"]["median"] == pytest.approx((0.9 + 1.2) / 2)
    assert summary["16x16"]["contenders"]["bare"]["rate"]["median"] == 75.0
    assert summary["16x16"]["loadavg"]["max"] == 2.0
    assert summary["256x1"]["ratios"][1]["by_rate"]["median"] == 0.5
    table = "\n".join(versus.markdown(summary, "rate", "server_us_per_msg", "msg"))
    assert "| 16x16 | router / starlette | 1.31 (1.12-1.50) | 1.31 (1.12-1.50) | 2 |" in table


def test_versus_runs_end_to_end(tmp_path: Path) -> None:
    """A real smoke run: bare, starlette and router served, every one measured at the
    configuration asked for, the ratios and the table written."""
    out = tmp_path / "versus.json"
    env = {**os.environ, "BENCH_QUICK": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.versus", "--quick", "--configs", "2x2", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert sorted(r["contender"] for r in data["runs"]) == ["bare", "router", "starlette"]
    assert not data["missing"]
    assert all(run["count"] > 0 and run["errors"] == 0 for run in data["runs"])
    ratios = data["summary"]["2x2"]["ratios"]
    assert [(r["subject"], r["baseline"]) for r in ratios] == [
        ("router", "starlette"),
        ("router", "bare"),
    ]
    assert all(r["by_rate"]["n"] == 1 and r["by_rate"]["median"] > 0 for r in ratios)
    assert "| 2x2 | router / starlette |" in proc.stdout


def test_report_holds_the_router_to_the_starlette_endpoint() -> None:
    """With the Starlette endpoint in a throughput run, the targets table has the router at
    1.0 x it, by rate and by CPU per message, per configuration."""
    from bench import report

    rates = {"bare": 100.0, "starlette": 80.0, "router": 84.0}
    runs = [
        {
            "contender": name,
            "repeat": 0,
            "conns": conns,
            "inflight": inflight,
            "rate": rate if conns == 16 else rate / 2,
            "server_us_per_msg": 1e6 / rate,
            "latency_ms": {"p50": 1.0, "p99": 2.0},
        }
        for name, rate in rates.items()
        for conns, inflight in [(16, 16), (256, 1)]
    ]
    targets = "\n".join(report.targets_section({"throughput": {"runs": runs}}))
    line = "| router throughput >= 1.0 x the Starlette endpoint at 16 x 16 | 1.05 "
    assert line + "(by CPU per message: 1.05) | **met** |" in targets
    assert "the Starlette endpoint at 256 x 1 | 1.05 (by CPU per message: 1.05)" in targets


MEASURE_IDLE = """
import asyncio, json, tracemalloc
from bench.conn_memory import _measure
tracemalloc.start(1)
bare = asyncio.run(_measure("bare", 300, 3))
router = asyncio.run(_measure("router", 300, 3))
print(json.dumps({"share": router["bytes_per_conn"] - bare["bytes_per_conn"],
                  "sites": router["sites"]}))
"""


def test_an_idle_router_connection_keeps_little_over_bare() -> None:
    """What an idle router connection keeps beside the bare app's, counted by tracemalloc
    (bench.conn_memory), stays under 1 KiB: its last request, a timer of its own or a
    coroutine per layer would each show here. It is counted in a fresh interpreter: under a
    tracer (coverage runs the suite) every suspended coroutine keeps a frame object, and the
    router's layers would be charged for the tracer's."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE_IDLE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout.splitlines()[-1])
    assert 0 < measured["share"] < 1024, measured
