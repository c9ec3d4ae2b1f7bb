"""Instructions per request in the whole server process, uvicorn included, under real load.

    python -m bench.served_instructions [--contenders bare,router,adapter]
        [--configs 16x16,256x1] [--count 20000]
        [--fanout bare,router] [--subscribers 1000] [--pushes 20] [--ping bare,router]

`bench/instructions.py` counts the app alone, in process. This counts what the real server
process executes in user space (uvicorn's frame parsing and queues, uvloop, the app) for a
fixed number of requests on real sockets: the contender is served by `bench.server` under
`valgrind --tool=callgrind`, pinned to the server core; the load generator's `counted` mode
warms up, then the counters are zeroed (`callgrind_control -z`), exactly `--count` requests
are sent and answered, and the counters are dumped (`callgrind_control -d`). Other load on
the machine cannot move the figure, unlike msg/s or CPU time. What it leaves out is the
kernel (the socket reads and writes, the same for every contender: `bench/write_cost.py`
measures them), so its ratios to the bare app overstate the difference in CPU time.
The server runs with uvicorn's keepalive pings off ($BENCH_WS_PING_INTERVAL=off unless set):
they fire by the wall clock, and callgrind stretches a counted round to tens of seconds, so
with 1,000 subscribers they put 1,000 to 3,000 ping/pong exchanges into the count, as many
as a busy machine makes the round last (the same code counted 20,253 to 21,754 per push).
`--ping` counts the JS client's heartbeat the same way: 256 connections with one PING each in
flight, so every PING wakes its connection as a heartbeat does (the router answers PONG,
the bare app echoes it, knowing no PING). The same for fan-out: one round of `--pushes`
pushes to `--subscribers` subscribers (the load generator's `fanout` mode, stepwise), per
delivered push. About a minute per contender
and configuration. Results: bench/results/served_instructions.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench._harness import CLIENT_CORE, ROOT, SERVER_CORE, _free_port, _pin, save
from bench.apps import PATHS

CONTENDERS = ["bare", "router", "adapter"]
CONFIGS = ["16x16", "256x1"]
WARMUP = 2000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.served_instructions", description=__doc__.split("\n")[0]
    )
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--count", type=int, default=20000)
    p.add_argument(
        "--fanout",
        default="bare,router",
        help="contenders for the fan-out count ('' for none)",
    )
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--pushes", type=int, default=20)
    p.add_argument(
        "--ping",
        default="",
        help="contenders for the heartbeat count, 256 x 1 PINGs (e.g. bare,router)",
    )
    return p


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed (apt-get install valgrind)")
    return found


def _wait_listening(proc: subprocess.Popen[Any], port: int, seconds: float = 180) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not listen within {seconds} s") from None
            time.sleep(0.2)


def _control(*args: str) -> None:
    subprocess.run([_tool("callgrind_control"), *args], check=True, capture_output=True)


def _total(path: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no instruction total in {path}")
    return int(match.group(1))


def server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The served process's environment: a fixed hash seed, and uvicorn's keepalive pings
    off unless `environ` sets $BENCH_WS_PING_INTERVAL: they fire by the clock, not per
    request or push, so they would make the count depend on how long a round lasted."""
    return {"BENCH_WS_PING_INTERVAL": "off", **environ, "PYTHONHASHSEED": "0"}


@contextlib.contextmanager
def _served(name: str) -> Iterator[tuple[subprocess.Popen[Any], str, Path]]:
    """Serve contender `name` under callgrind; yield the process, its URL and the directory
    its dumps go to."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                *_pin(SERVER_CORE),
                _tool("valgrind"),
                "--tool=callgrind",
                f"--callgrind-out-file={Path(tmp) / 'callgrind.out'}",
                sys.executable,
                "-m",
                "bench.server",
                name,
                str(port),
            ],
            cwd=ROOT,
            env=server_env(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_listening(server, port)
            yield server, f"ws://127.0.0.1:{port}{PATHS.get(name, '/ws')}", Path(tmp)
        finally:
            server.terminate()
            server.wait(60)


def _count(name: str, spec: dict[str, Any]) -> tuple[int, Any]:
    """Serve `name` under callgrind and run the load generator (`spec`, a stepwise mode)
    against it; return the instructions the server executed between the generator's `ready`
    and `done` lines, and what `done` said."""
    with _served(name) as (server, url, dumps):
        return _count_served(server, dumps, {**spec, "url": url})


def _count_served(
    server: subprocess.Popen[Any], dumps: Path, spec: dict[str, Any]
) -> tuple[int, Any]:
    client = subprocess.Popen(
        [*_pin(CLIENT_CORE), sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    if "ready" not in json.loads(client.stdout.readline()):
        raise RuntimeError("the load generator did not get ready")
    _control("-z", str(server.pid))
    client.stdin.write("\n")
    client.stdin.flush()
    done = json.loads(client.stdout.readline())["done"]
    _control("-d", str(server.pid))
    client.stdin.write("\n")
    client.stdin.flush()
    client.stdout.read()
    if client.wait(120) != 0:
        raise RuntimeError("the load generator failed")
    files = sorted(dumps.glob("callgrind.out*"))
    if not files:
        raise RuntimeError("callgrind wrote no dump")
    return _total(files[-1]), done


def measure(
    name: str, conns: int, inflight: int, count: int, route: str = "echo"
) -> dict[str, Any]:
    """Instructions the served contender executed for exactly `count` requests to `route`."""
    instructions, done = _count(
        name,
        {
            "mode": "counted",
            "conns": conns,
            "inflight": inflight,
            "warmup_count": WARMUP,
            "count": count,
            "route": route,
            "proto": "envelope",
        },
    )
    if done != count:
        raise RuntimeError(f"{name}: {done} of {count} answered")
    return {
        "workload": "ping" if route == "PING" else route,
        "contender": name,
        "conns": conns,
        "inflight": inflight,
        "count": count,
        "instructions": instructions,
        "per_request": instructions / count,
    }


def measure_fanout(name: str, subscribers: int, pushes: int) -> dict[str, Any]:
    """Instructions the served contender executed for one round of `pushes` pushes to
    `subscribers` subscribers (the publish request included), after a warm-up round."""
    spec = {"mode": "fanout", "subscribers": subscribers, "pushes": pushes, "rounds": 1}
    instructions, frames = _count(
        name, {**spec, "stepwise": True, "timeout": 600, "proto": "envelope"}
    )
    return {
        "workload": "fanout",
        "contender": name,
        "subscribers": subscribers,
        "pushes": pushes,
        "frames": frames,
        "instructions": instructions,
        "per_push": instructions / frames,
    }


def _print(label: str, run: dict[str, Any], key: str, unit: str, base: float | None) -> None:
    ratio = f"  {run[key] / base:.2f} x bare" if base else ""
    print(f"{label:>6} {run['contender']:<10} {run[key]:>10,.0f} instructions/{unit}{ratio}")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    runs = []
    for config in args.configs.split(",") if args.configs else []:
        conns, inflight = (int(part) for part in config.split("x"))
        base = None
        for name in args.contenders.split(","):
            run = measure(name, conns, inflight, args.count)
            runs.append(run)
            base = run["per_request"] if name == "bare" else base
            _print(config, run, "per_request", "request", base)
    base = None
    for name in args.ping.split(",") if args.ping else []:
        run = measure(name, 256, 1, args.count, route="PING")
        runs.append(run)
        base = run["per_request"] if name == "bare" else base
        _print("ping", run, "per_request", "PING", base)
    base = None
    for name in args.fanout.split(",") if args.fanout else []:
        run = measure_fanout(name, args.subscribers, args.pushes)
        runs.append(run)
        base = run["per_push"] if name == "bare" else base
        _print("fanout", run, "per_push", "delivered push", base)
    print(f"wrote {save('served_instructions', {'runs': runs})}")


if __name__ == "__main__":
    main()
