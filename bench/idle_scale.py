"""Scenario: up to 100,000 idle connections on one worker; memory, heartbeat CPU, accept rate.

    python -m bench.idle_scale                       # 1k, 10k, 50k, 100k; bare, router,
                                                     # python-socketio, Channels
    python -m bench.idle_scale --counts 1000,10000 --contenders bare,router
    python -m bench.idle_scale --plot-only           # redraw the plot from the last run
    python -m bench.idle_scale --contenders bare,router --ws-ping-interval off
    python -m bench.idle_scale --contenders bare,router --server granian

Each contender gets a fresh uvicorn worker (`--server granian`: a Granian worker, to tell
the server's cost per connection and per PING from the app's; its results are named
"<contender> on granian"). Its connections come from several load-generator
processes (`bench.loadgen`'s `hold` mode), each from its own loopback source address
(127.0.0.11, .12, ...): one address has about 28,000 ephemeral ports towards one server port,
so 100,000 sockets need several (Linux routes all of 127.0.0.0/8 to loopback; macOS needs
`ifconfig lo0 alias` first). The file limits are raised in the benchmark's processes only
($BENCH_NOFILE), never by the library. Raising the hard limit needs CAP_SYS_RESOURCE: without
it one process holds at most its hard limit (often 20,000) of sockets, and counts above what
the server can hold are replaced by the most it can hold (the results say so). The PINGs of
100,000 connections (1,667/s) are then also sent over the largest count held, for the CPU.
Handshakes run at most `--concurrency` at a time over all processes, each connection
answered once so the app really serves it.

At every count N, after the step's connections are all open and answered:

- memory: the server's RSS and PSS; per connection = (RSS at N - RSS at the first
  connections) / (N - their number). The router's own share is router - bare;
- accepted per second: the step's new connections over its wall time. The load generator
  shares the machine (and the server's neighbour core) with everything else, so it is a lower
  bound of what the server can accept;
- heartbeat CPU: the server's CPU time over a window with the connections idle (uvicorn's own
  WebSocket pings every 20 s run in it), then over a window of the same length while the
  clients send the JS client's PING at its default rate, one per connection per 60 s
  (N / 60 per second over all, spread evenly in 10 ms ticks), each answered. Both as % of
  one core; what PINGs add is the difference. python-socketio has no PING route: its
  clients send an `echo` event with ack at the same rate (its own Engine.IO ping runs every
  25 s in both windows).

Results: bench/results/idle_scale.json and .md; the plot bench/idle_scale.png and
docs/img/idle-scale.png. The full run takes about 15 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._harness import (
    CLIENT_CORE,
    RESULTS,
    ROOT,
    Server,
    _pin,
    contenders,
    save,
)

COUNTS = [1000, 10000, 50000, 100000]
CONTENDERS = ["bare", "router", "socketio", "channels"]
#: the JS client's default heartbeatRate (PROTOCOL.md)
HEARTBEAT_SECONDS = 60.0
#: connections per load-generator process (and source address): well under the ~28,000
#: ephemeral ports one address has, and under a 20,000 descriptor limit
PER_PROCESS = 15000
#: descriptors a server keeps for itself (listening socket, epoll, stdio, imports)
SPARE_FDS = 100
#: the PING rate of this many connections is also sent over the largest count held
TARGET = 100000
#: the plot, for BENCHMARKS.md and for the docs' benchmarks page
PLOTS = [ROOT / "bench" / "idle_scale.png", ROOT / "docs" / "img" / "idle-scale.png"]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_scale", description=__doc__)
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument(
        "--window", type=float, default=20.0, help="seconds of each CPU window (default 20)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=128, help="handshakes in flight over all processes"
    )
    parser.add_argument(
        "--processes", type=int, default=0, help="load generators (default: 1 per 20,000)"
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT_SECONDS,
        help="seconds between one connection's PINGs (default 60, the JS client's)",
    )
    parser.add_argument(
        "--ws-ping-interval",
        default="",
        help="uvicorn's own ping interval in seconds, or 'off' (default: uvicorn's, 20)",
    )
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="the ASGI server (bench/server.py; default uvicorn)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts, a smoke run")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the last JSON")
    parser.add_argument(
        "--also",
        default="",
        help="with --plot-only: the JSON of another run (e.g. --ws-ping-interval off) to draw "
        "beside it, its contenders named after that run's uvicorn ping interval",
    )
    return parser


def fd_limit(pid: int) -> int:
    """The soft RLIMIT_NOFILE of process `pid`: how many sockets it can hold."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise RuntimeError("no 'Max open files' line")


def pss_kib(*pids: int) -> int:
    """Proportional set size of `pids`, KiB: RSS with shared pages divided among sharers."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total


class Holders:
    """The load-generator processes that hold the connections, all on the client core."""

    def __init__(self, server: Server, processes: int, concurrency: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        each = max(1, concurrency // processes)
        for k in range(processes):
            spec = {
                "mode": "hold",
                "url": server.url,
                "proto": server.proto,
                "source": f"127.0.0.{11 + k}",
                "concurrency": each,
            }
            self.procs.append(
                subprocess.Popen(
                    [*_pin(CLIENT_CORE), sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send one command to each process at once; wait for every answer."""
        for proc, command in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        answers = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"load generator ended early ({proc.wait()})")
            answers.append(json.loads(line))
        return answers

    def shares(self, total: int) -> list[int]:
        """`total` split over the processes as evenly as integers allow."""
        n = len(self.procs)
        return [total * (k + 1) // n - total * k // n for k in range(n)]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                assert proc.stdin is not None
                try:
                    proc.stdin.write('{"quit": true}\n')
                    proc.stdin.close()
                    proc.wait(60)
                except (OSError, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait()


def _settled_rss(server: Server) -> int:
    """RSS once it stops growing (two reads 0.5 s apart within 0.2 %), at most 10 s."""
    last = server.rss_kib()
    for _ in range(20):
        time.sleep(0.5)
        now = server.rss_kib()
        if abs(now - last) <= last * 0.002:
            return now
        last = now
    return last


def _cpu_window(server: Server, seconds: float) -> float:
    """The server's CPU over `seconds` of idleness, as a fraction of one core."""
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    return (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0)


def measure(
    name: str,
    counts: list[int],
    window: float,
    concurrency: int,
    processes: int,
    heartbeat: float = HEARTBEAT_SECONDS,
    target: int | None = TARGET,
    ws_ping_interval: str = "",
    server_kind: str = "uvicorn",
) -> dict[str, Any]:
    """Every figure of `name` at each count, with one fresh server and one set of holders."""
    env = {"BENCH_NOFILE": str(max(counts) + 4096), "BENCH_SERVER": server_kind}
    if ws_ping_interval:
        env["BENCH_WS_PING_INTERVAL"] = ws_ping_interval
    server = Server(name, env=env)
    if server_kind != "uvicorn":
        name = f"{name} on {server_kind}"
    # Without CAP_SYS_RESOURCE the hard limit (often 20,000) caps what one process can
    # hold: counts above it are replaced by the most it can hold, and the result says so.
    holdable = fd_limit(server.proc.pid) - SPARE_FDS
    capped = [n for n in counts if n > holdable]
    if capped:
        counts = sorted({min(n, holdable) for n in counts})
        print(f"{name}: the server can hold {holdable:,} sockets; {capped} capped", flush=True)
    holders = Holders(server, processes or -(-max(counts) // PER_PROCESS), concurrency)
    steps: list[dict[str, Any]] = []
    at_target: dict[str, Any] = {}
    try:
        first = holders.ask([{"open": 1}] * len(holders.procs))
        base_n = sum(answer["open"] for answer in first)
        base_rss, base_pss = _settled_rss(server), pss_kib(*server.pids())
        held = base_n
        for n in counts:
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            answers = holders.ask([{"open": share} for share in holders.shares(n)])
            seconds = time.perf_counter() - t0
            open_cpu = server.cpu_seconds() - cpu0
            opened = sum(answer["open"] for answer in answers)
            held_before, held = held, opened
            rate = (opened - held_before) / seconds
            rss, pss = _settled_rss(server), pss_kib(*server.pids())
            idle = _cpu_window(server, window)
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            beats = holders.ask(
                [{"beat": share / heartbeat, "seconds": window} for share in holders.shares(n)]
            )
            beat = (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
            step = {
                "n": opened,
                "rss_kib": rss,
                "pss_kib": pss,
                "kib_per_conn": (rss - base_rss) / (opened - base_n),
                "pss_kib_per_conn": (pss - base_pss) / (opened - base_n),
                "accepted_per_s": rate,
                # server CPU per connection opened (handshake + one echo): what the
                # accept rate would be with a core of its own, 1e6 / this
                "server_us_per_accept": open_cpu / (opened - held_before) * 1e6,
                "open_errors": sum(answer["errors"] for answer in answers),
                "idle_cpu": idle,
                "beat_cpu": beat,
                "beats_sent": sum(b["sent"] for b in beats),
                "beats_answered": sum(b["answered"] for b in beats),
                "beats_per_s": sum(b["sent"] for b in beats) / max(b["seconds"] for b in beats),
                "lost": sum(b.get("lost", 0) for b in beats),
            }
            steps.append(step)
            print(
                f"{name:<9} {opened:>7} conns  {step['kib_per_conn']:5.1f} KiB/conn RSS "
                f"({step['pss_kib_per_conn']:5.1f} PSS)  {rate:7.0f} accepted/s  "
                f"CPU idle {idle * 100:5.2f} %  with PINGs {beat * 100:5.2f} % "
                f"({step['beats_answered']}/{step['beats_sent']} answered, {step['lost']} lost)",
                flush=True,
            )
            if target is not None and n == counts[-1] and n < target:
                # the heartbeat load of TARGET connections, sent over the ones held
                cpu0, t0 = server.cpu_seconds(), time.perf_counter()
                beats = holders.ask(
                    [
                        {"beat": target / heartbeat / len(holders.procs), "seconds": window}
                        for _ in holders.procs
                    ]
                )
                at_target = {
                    "n": opened,
                    "as_if": target,
                    "beat_cpu": (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0),
                    "beats_sent": sum(b["sent"] for b in beats),
                    "beats_answered": sum(b["answered"] for b in beats),
                    "beats_per_s": sum(b["sent"] for b in beats) / max(b["seconds"] for b in beats),
                    "lost": sum(b.get("lost", 0) for b in beats),
                }
                print(
                    f"{name:<9} {opened:>7} conns  PINGs of {target:,} "
                    f"({at_target['beats_per_s']:.0f}/s): CPU "
                    f"{at_target['beat_cpu'] * 100:5.2f} % ({at_target['beats_answered']}/"
                    f"{at_target['beats_sent']} answered, {at_target['lost']} lost)",
                    flush=True,
                )
    finally:
        holders.stop()
        server.stop()
    return {
        "contender": name,
        "base_n": base_n,
        "base_rss_kib": base_rss,
        "holdable": holdable,
        "capped": capped,
        "steps": steps,
        "at_target_rate": at_target,
    }


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def table(data: dict[str, Any]) -> str:
    """The results as Markdown: one row per contender and count; under it the slope of RSS
    over the count, the router's own share and the PING load of TARGET connections."""
    lines = [
        "| contender | connections | RSS MiB | KiB/conn (RSS) | KiB/conn (PSS) | accepted/s "
        "(lower bound) | server CPU us/accept | CPU idle | CPU with PINGs (N/60 per s) "
        "| PINGs answered | connections lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by: dict[str, dict[int, dict[str, Any]]] = {}
    notes: list[str] = []
    for run in data["runs"]:
        for step in run["steps"]:
            by.setdefault(run["contender"], {})[step["n"]] = step
            lines.append(
                f"| {run['contender']} | {step['n']:,} | {step['rss_kib'] / 1024:.0f} | "
                f"{step['kib_per_conn']:.1f} | {step['pss_kib_per_conn']:.1f} | "
                f"{step['accepted_per_s']:,.0f} | {step['server_us_per_accept']:.0f} | "
                f"{step['idle_cpu'] * 100:.2f} % | {step['beat_cpu'] * 100:.2f} % | "
                f"{step['beats_answered']:,} of {step['beats_sent']:,} | {step.get('lost', 0)} |"
            )
        points = [(run["base_n"], run["base_rss_kib"])] + [
            (step["n"], step["rss_kib"]) for step in run["steps"]
        ]
        slope = _slope([(float(x), float(y)) for x, y in points])
        projected = (run["base_rss_kib"] + slope * (TARGET - run["base_n"])) / 1024
        notes.append(
            f"- {run['contender']}: {slope:.1f} KiB per connection (least squares over every "
            f"count); {TARGET:,} connections would take {projected:,.0f} MiB"
        )
        target = run.get("at_target_rate") or {}
        if target:
            notes.append(
                f"  - the PINGs of {target['as_if']:,} connections "
                f"({target['beats_per_s']:,.0f}/s) over the {target['n']:,} held: server CPU "
                f"{target['beat_cpu'] * 100:.2f} % of one core "
                f"({target['beats_answered']:,} of {target['beats_sent']:,} answered; "
                f"{target.get('lost', 0):,} connections lost)"
            )
        if run.get("capped"):
            notes.append(
                f"  - counts {', '.join(f'{n:,}' for n in run['capped'])} capped: the server "
                f"can hold {run['holdable']:,} sockets here (RLIMIT_NOFILE)"
            )
    if "bare" in by and "router" in by:
        shares = [
            f"{n:,}: {by['router'][n]['kib_per_conn'] - by['bare'][n]['kib_per_conn']:+.1f}"
            for n in sorted(by["router"])
            if n in by["bare"]
        ]
        notes.append("- router's own share (router - bare, KiB/conn, RSS): " + "; ".join(shares))
    return "\n".join([*lines, "", *notes])


def plot(data: dict[str, Any], paths: list[Path] = PLOTS) -> None:
    """Memory per connection and server CPU (idle, with PINGs) against the count; a star at
    100,000 for the PING rate of 100,000 sent over the largest count held."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (mem, cpu) = plt.subplots(1, 2, figsize=(11, 4.4))
    for run in data["runs"]:
        steps = run["steps"]
        xs = [s["n"] for s in steps]
        line = mem.plot(xs, [s["kib_per_conn"] for s in steps], "o-", label=run["contender"])
        colour = line[0].get_color()
        cpu.plot(
            xs, [s["beat_cpu"] * 100 for s in steps], "o-", color=colour, label=run["contender"]
        )
        cpu.plot(xs, [s["idle_cpu"] * 100 for s in steps], "x--", color=colour, alpha=0.6)
        target = run.get("at_target_rate") or {}
        if target:
            cpu.plot([target["as_if"]], [target["beat_cpu"] * 100], "*", color=colour, ms=12)
    mem.axhline(22, color="grey", linestyle=":", label="goal: 22 KiB")
    cpu.axhline(5, color="grey", linestyle=":")
    for ax in (mem, cpu):
        ax.set_xscale("log")
        ax.set_xlim(600, 160000)
        ax.set_xlabel("idle connections on one uvicorn worker")
        ax.grid(True, alpha=0.3)
    mem.set_ylabel("server RSS growth per connection (KiB)")
    mem.set_ylim(bottom=0)
    cpu.set_ylabel("server CPU (% of one core)")
    cpu.set_ylim(bottom=0)
    mem.legend(fontsize=8, loc="lower right")
    handles = cpu.get_legend_handles_labels()[0]
    handles += [
        Line2D([], [], color="grey", marker="o", label="PING per connection every 60 s"),
        Line2D([], [], color="grey", marker="x", ls="--", label="idle (no PINGs)"),
        Line2D([], [], color="grey", marker="*", ls="", ms=10, label="1,667 PINGs/s (100k's)"),
        Line2D([], [], color="grey", ls=":", label="goal: 5 %"),
    ]
    cpu.legend(handles=handles, fontsize=7, ncol=2, loc="upper left")
    mem.set_title("Memory per idle connection")
    cpu.set_title("Server CPU: idle and with the JS client's heartbeat")
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.plot_only:
        data = json.loads((RESULTS / "idle_scale.json").read_text())
        if args.also:
            other = json.loads(Path(args.also).read_text())
            interval = other.get("ws_ping_interval", "")
            suffix = "uvicorn pings off" if interval == "off" else f"uvicorn pings {interval}"
            for run in other["runs"]:
                data["runs"].append({**run, "contender": f"{run['contender']}, {suffix}"})
        plot(data)
        print(table(data))
        return
    counts = [int(part) for part in args.counts.split(",") if part.strip()]
    window = args.window
    processes = args.processes
    if args.quick:
        counts, window, processes = [10, 30], 0.5, processes or 2
        args.heartbeat = 0.05  # 200 and 600 PINGs/s: enough to see them answered
    names, missing = contenders(args.contenders.split(","))
    started = time.monotonic()
    runs = [
        measure(
            name,
            counts,
            window,
            args.concurrency,
            processes,
            args.heartbeat,
            None if args.quick else TARGET,
            args.ws_ping_interval,
            args.server,
        )
        for name in names
    ]
    data = {
        "runs": runs,
        "missing": missing,
        "counts": counts,
        "window_s": window,
        "concurrency": args.concurrency,
        "heartbeat_s": args.heartbeat,
        "ws_ping_interval": args.ws_ping_interval or "uvicorn's default (20 s)",
        "server": args.server,
        "minutes": (time.monotonic() - started) / 60,
    }
    path = save("idle_scale", data)
    text = table(data)
    (RESULTS / "idle_scale.md").write_text(text + "\n")
    if not args.quick:
        # a run whose results go elsewhere ($BENCH_RESULTS) leaves the committed plots alone
        plot(data, PLOTS if RESULTS == ROOT / "bench" / "results" else [RESULTS / "idle_scale.png"])
    print(text)
    print(f"wrote {path} in {data['minutes']:.1f} min")


if __name__ == "__main__":
    main()
