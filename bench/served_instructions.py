"""Instructions per request in the whole server process, uvicorn included, under real load.

    python -m bench.served_instructions [--contenders bare,router,adapter]
        [--configs 16x16,256x1] [--count 20000]

`bench/instructions.py` counts the app alone, in process. This counts what the real server
process executes in user space (uvicorn's frame parsing and queues, uvloop, the app) for a
fixed number of requests on real sockets: the contender is served by `bench.server` under
`valgrind --tool=callgrind`, pinned to the server core; the load generator's `counted` mode
warms up, then the counters are zeroed (`callgrind_control -z`), exactly `--count` requests
are sent and answered, and the counters are dumped (`callgrind_control -d`). Other load on
the machine cannot move the figure, unlike msg/s or CPU time. What it leaves out is the
kernel (the socket reads and writes, the same for every contender: `bench/write_cost.py`
measures them), so its ratios to the bare app overstate the difference in CPU time.
About a minute per contender and configuration. Results: bench/results/served_instructions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
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


def measure(name: str, conns: int, inflight: int, count: int) -> dict[str, Any]:
    """Instructions the served contender executed for exactly `count` requests."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "callgrind.out"
        server = subprocess.Popen(
            [
                *_pin(SERVER_CORE),
                _tool("valgrind"),
                "--tool=callgrind",
                f"--callgrind-out-file={base}",
                sys.executable,
                "-m",
                "bench.server",
                name,
                str(port),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_listening(server, port)
            spec = {
                "mode": "counted",
                "url": f"ws://127.0.0.1:{port}{PATHS.get(name, '/ws')}",
                "conns": conns,
                "inflight": inflight,
                "warmup_count": WARMUP,
                "count": count,
                "route": "echo",
                "proto": "envelope",
            }
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
            done = json.loads(client.stdout.readline())
            _control("-d", str(server.pid))
            client.stdin.write("\n")
            client.stdin.flush()
            result = json.loads(client.stdout.read().strip().splitlines()[-1])
            client.wait(60)
            dumps = sorted(Path(tmp).glob("callgrind.out*"))
            if not dumps:
                raise RuntimeError("callgrind wrote no dump")
            instructions = _total(dumps[-1])
        finally:
            server.terminate()
            server.wait(60)
    if done["done"] != count or result["errors"]:
        raise RuntimeError(f"{name}: {done['done']} of {count} answered, {result['errors']} errors")
    return {
        "contender": name,
        "conns": conns,
        "inflight": inflight,
        "count": count,
        "instructions": instructions,
        "per_request": instructions / count,
    }


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    runs = []
    for config in args.configs.split(","):
        conns, inflight = (int(part) for part in config.split("x"))
        base = None
        for name in args.contenders.split(","):
            run = measure(name, conns, inflight, args.count)
            runs.append(run)
            base = run["per_request"] if name == "bare" else base
            ratio = f"  {run['per_request'] / base:.2f} x bare" if base else ""
            per = run["per_request"]
            print(f"{config:>6} {name:<10} {per:>10,.0f} instructions/request{ratio}")
    print(f"wrote {save('served_instructions', {'runs': runs})}")


if __name__ == "__main__":
    main()
