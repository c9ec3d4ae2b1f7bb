"""What a reply's `write()` costs under each server: counted and profiled from the kernel.

    python -m bench.write_cost [contender ...]     # default: bare router

A py-spy profile once showed uvicorn's `transport.write` line costing 2.7 us more per
message under the router than under the bare app. This checks it without py-spy's line
attribution: each contender, pinned, under the 16 x 16 echo load (BENCH_WRITE_CONNS,
BENCH_WRITE_INFLIGHT), in three windows of BENCH_WRITE_SECONDS (2):

1. `perf stat` on kernel tracepoints (counts, no sampling), server and load generator:
   write/read/epoll_pwait/sendto/recvfrom calls and sched_wakeup (fired by the waker: a
   server write that wakes a sleeping client counts on the server) per message;
2. `perf record` on sys_enter_write: the size of every write;
3. `perf record -g` on cpu-clock: the share of the server's samples inside the kernel's
   write path (`ksys_write`, inclusive), its read path and the interpreter loop, turned
   into us per message with the server's CPU time (`/proc/<pid>/stat`, user and system).

Needs `perf` with tracepoint access (root, or kernel.perf_event_paranoid <= 1).
Results: bench/results/write_cost.json.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from bench._harness import (
    CLIENT_CORE,
    CLOCK_TICKS,
    RESULTS,
    Server,
    _pin,
    env_float,
    env_int,
    median,
    order,
    save,
)

EVENTS = [
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_recvfrom",
    "sched:sched_wakeup",
    "context-switches",
]
#: kernel and interpreter functions whose inclusive share of the server's samples is kept
SYMBOLS = [
    "ksys_write",
    "tcp_sendmsg",
    "sock_def_readable",
    "try_to_wake_up",
    "ksys_read",
    "do_epoll_wait",
    "_PyEval_EvalFrameDefault",
]


def _perf() -> str:
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("perf is not installed (apt-get install linux-perf)")
    return perf


def _out(path: Any) -> list[str]:
    return ["-o", str(path)]


def _for(seconds: float) -> list[str]:
    return ["--", "sleep", str(seconds)]


def _times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def _perf_stat(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """Counts of EVENTS per process over `seconds`."""
    procs = {
        role: subprocess.Popen(
            [_perf(), "stat", "-x", ",", "-e", ",".join(EVENTS), "-p", str(pid), *_for(seconds)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role, pid in pids.items()
    }
    out: dict[str, dict[str, float]] = {}
    for role, proc in procs.items():
        _, err = proc.communicate(timeout=seconds + 30)
        counts: dict[str, float] = {}
        for line in err.splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[2] in EVENTS:
                try:
                    counts[parts[2]] = float(parts[0])
                except ValueError:
                    counts[parts[2]] = float("nan")
        out[role] = counts
    return out


def _write_sizes(pid: int, seconds: float) -> dict[str, Any]:
    """Sizes of the server's write() calls over `seconds`."""
    data = RESULTS / f"perf-write-{pid}.data"
    subprocess.run(
        [
            _perf(),
            "record",
            "-q",
            "-e",
            "syscalls:sys_enter_write",
            "-p",
            str(pid),
            *_out(data),
            *_for(seconds),
        ],
        capture_output=True,
        check=True,
        timeout=seconds + 60,
    )
    script = subprocess.run(
        [_perf(), "script", "-i", str(data)], capture_output=True, text=True, timeout=120
    ).stdout
    data.unlink(missing_ok=True)
    sizes = [int(m, 16) for m in re.findall(r"count: 0x([0-9a-f]+)", script)]
    return {
        "writes": len(sizes),
        "mean_bytes": sum(sizes) / len(sizes) if sizes else None,
        "most_common": collections.Counter(sizes).most_common(4),
    }


def _profile(pid: int, seconds: float) -> tuple[dict[str, float], float, float]:
    """Inclusive shares (%) of SYMBOLS in the server's cpu-clock samples, and the server's
    (user, system) CPU seconds over the same window."""
    data = RESULTS / f"perf-cpu-{pid}.data"
    user0, sys0 = _times(pid)
    subprocess.run(
        [
            _perf(),
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "4000",
            "-g",
            "-p",
            str(pid),
            *_out(data),
            *_for(seconds),
        ],
        capture_output=True,
        check=True,
        timeout=seconds + 60,
    )
    user1, sys1 = _times(pid)
    report = subprocess.run(
        [_perf(), "report", "-i", str(data), "--children", "--sort=sym", "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    data.unlink(missing_ok=True)
    shares: dict[str, float] = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[.\]\s+(\S+)", line)
        if m and m.group(2) in SYMBOLS and m.group(2) not in shares:
            shares[m.group(2)] = float(m.group(1))
    return shares, user1 - user0, sys1 - sys0


def _under_load(server: Server, conns: int, inflight: int, seconds: float, probe: Any) -> Any:
    """Run `probe()` inside the measured window of one load-generator run; return the
    probe's result and the run's msg/s (steady over the window, so per-message figures are
    counts / (rate x seconds))."""
    spec = {
        "mode": "throughput",
        "url": server.url,
        "conns": conns,
        "inflight": inflight,
        "warmup": 1.0,
        "duration": seconds + 1.0,
        "route": "echo",
        "server_pid": server.proc.pid,
        "proto": server.proto,
    }
    client = subprocess.Popen(
        [*_pin(CLIENT_CORE), sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        value = probe(client.pid)
        out, _ = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    return value, float(json.loads(out.strip().splitlines()[-1])["rate"])


def measure(name: str, conns: int, inflight: int, seconds: float) -> dict[str, Any]:
    server = Server(name)
    pid = server.proc.pid
    try:
        counts, rate1 = _under_load(
            server,
            conns,
            inflight,
            seconds,
            lambda client: _perf_stat({"server": pid, "client": client}, seconds),
        )
        sizes, _ = _under_load(
            server, conns, inflight, seconds, lambda client: _write_sizes(pid, seconds)
        )
        (shares, user, system), rate3 = _under_load(
            server, conns, inflight, seconds, lambda client: _profile(pid, seconds)
        )
    finally:
        server.stop()
    messages = rate1 * seconds
    profiled = rate3 * seconds
    us_per_msg = (user + system) / profiled * 1e6
    return {
        "contender": name,
        "rate": rate1,
        "per_message": {
            role: {event.split(":")[-1]: value / messages for event, value in c.items()}
            for role, c in counts.items()
        },
        "write_sizes": sizes,
        # CPU while perf samples the server (perf itself inflates it; compare, don't quote)
        "profiled_us_per_msg": us_per_msg,
        "profiled_user_us": user / profiled * 1e6,
        "profiled_system_us": system / profiled * 1e6,
        "inclusive_us_per_msg": {sym: share / 100 * us_per_msg for sym, share in shares.items()},
    }


def main() -> None:
    names = sys.argv[1:] or ["bare", "router"]
    conns = env_int("BENCH_WRITE_CONNS", 16)
    inflight = env_int("BENCH_WRITE_INFLIGHT", 16)
    seconds = env_float("BENCH_WRITE_SECONDS", 2.0)
    runs = []
    for repeat in range(env_int("BENCH_REPEATS", 3)):
        for name in order(names, repeat):
            run = measure(name, conns, inflight, seconds)
            run["repeat"] = repeat
            runs.append(run)
            server = run["per_message"]["server"]
            inclusive = run["inclusive_us_per_msg"]
            print(
                f"r{repeat} {name:<8} {run['rate']:>6.0f} msg/s  per message: "
                f"write {server.get('sys_enter_write', 0):.2f} "
                f"({run['write_sizes']['mean_bytes'] or 0:.0f} B) "
                f"read {server.get('sys_enter_read', 0):.3f} "
                f"epoll {server.get('sys_enter_epoll_pwait', 0):.3f} "
                f"wakeups {server.get('sched_wakeup', 0):.3f}  | us/msg: "
                f"cpu {run['profiled_us_per_msg']:.1f} "
                f"(sys {run['profiled_system_us']:.1f}) "
                f"ksys_write {inclusive.get('ksys_write', 0):.2f} "
                f"ksys_read {inclusive.get('ksys_read', 0):.2f} "
                f"eval {inclusive.get('_PyEval_EvalFrameDefault', 0):.2f}",
                flush=True,
            )
    summary = {
        name: {
            key: median(
                [r["inclusive_us_per_msg"].get(key, 0.0) for r in runs if r["contender"] == name]
            )
            for key in SYMBOLS
        }
        for name in names
    }
    path = save(
        "write_cost",
        {"runs": runs, "conns": conns, "inflight": inflight, "summary_us_per_msg": summary},
    )
    print(json.dumps(summary, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
