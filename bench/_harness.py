"""What every scenario shares: pinned server processes, the load generator, RSS and medians.

The server of each contender runs in its own process on core 0 (`taskset`), the load
generator on core 1; on a one-core machine both run unpinned and the report says so.
Results go to `bench/results/<scenario>.json` (git-ignored); `bench/report.py` turns them
into tables and the plot.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
#: where results go; BENCH_RESULTS moves them (the smoke test writes to a temporary folder)
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "bench" / "results")
SEED = 20250101
SERVER_CORE, CLIENT_CORE = "0", "1"
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pinning() -> bool:
    """True when the server and the client can each have a core of their own."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def _pin(core: str) -> list[str]:
    return ["taskset", "-c", core] if pinning() else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available(name: str) -> str | None:
    """None if contender `name` can be built here, else why not (checked in a subprocess)."""
    code = f"from bench.apps import build; build({name!r})"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["failed to build"])[-1]


class Server:
    """A contender served by uvicorn in a child process pinned to the server core."""

    def __init__(
        self, name: str, env: dict[str, str] | None = None, core: str = SERVER_CORE
    ) -> None:
        from bench.apps import PATHS

        self.name = name
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}{PATHS.get(name, '/ws')}"
        #: what the load generator must speak to it
        self.proto = "socketio" if name == "socketio" else "envelope"
        self.proc = subprocess.Popen(
            [*_pin(core), sys.executable, "-m", "bench.server", name, str(self.port)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            # the original package prints every close code on stdout
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {name} exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"server {name} did not listen within 30 s") from None
                time.sleep(0.05)

    def pids(self) -> list[int]:
        """The server process and every process it started (Granian's worker; uvicorn
        starts none): what serves the connections."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(child) for child in f.read().split()]
        return found

    def rss_kib(self) -> int:
        """Resident set size of the server's processes, KiB."""
        total = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes have used."""
        ticks = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / CLOCK_TICKS

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class RedisServer:
    """A throwaway redis-server on a free loopback port (no persistence), on the client core:
    in the fan-out scenario the client mostly waits, the subscribers' server must not share."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                *_pin(CLIENT_CORE),
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextlib.contextmanager
def servers(names: list[str]) -> Iterator[dict[str, Server]]:
    """Start every contender at once (idle ones cost nothing) so runs can alternate."""
    started: dict[str, Server] = {}
    try:
        for name in names:
            started[name] = Server(name)
        yield started
    finally:
        for server in started.values():
            server.stop()


def loadgen(spec: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Run the load generator once on the client core and return its result."""
    proc = subprocess.run(
        [*_pin(CLIENT_CORE), sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr.strip()[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def loadgen_interactive(spec: dict[str, Any]) -> subprocess.Popen[str]:
    """Start the load generator for a stepwise mode (`idle`, `slow`); talk over its pipes."""
    return subprocess.Popen(
        [*_pin(CLIENT_CORE), sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def parse_configs(text: str) -> list[tuple[int, int]]:
    """`16x16,256x1` -> [(16, 16), (256, 1)]."""
    configs = []
    for part in text.split(","):
        if part.strip():
            conns, inflight = part.lower().split("x")
            configs.append((int(conns), int(inflight)))
    return configs


def order(names: list[T], repeat: int) -> list[T]:
    """The contenders in a seeded order that changes every repeat, so drift and warm-up
    do not always favour the same one."""
    shuffled = list(names)
    random.Random(SEED + repeat).shuffle(shuffled)
    return shuffled


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for dist in (
        "uvicorn",
        "uvloop",
        "httptools",
        "websockets",
        "picows",
        "orjson",
        "fastapi",
        "starlette",
        "fastapi-observable-socket",
        "observable-socket-asgi",
    ):
        with contextlib.suppress(PackageNotFoundError):
            versions[dist] = version(dist)
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        # the bench imports the working tree (editable install): say if the code differed
        "core_modified": bool(
            _git("status", "--porcelain", "observable_socket_asgi", "fastapi_adapter")
        ),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "pinned": pinning(),
        "versions": versions,
    }


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip()


def save(scenario: str, data: dict[str, Any], path: Path | None = None) -> Path:
    """Write `data` with the machine it ran on to `path` (default: the results folder)."""
    path = path if path is not None else RESULTS / f"{scenario}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"scenario": scenario, "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def contenders(requested: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The contenders that can run here, and why the others cannot."""
    from bench.apps import CONTENDERS

    names = list(requested or CONTENDERS)
    missing = {name: why for name in names if (why := available(name)) is not None}
    return [name for name in names if name not in missing], missing


def quick() -> bool:
    """True for a smoke run (`scripts/bench --quick`, BENCH_QUICK=1): tiny counts, one repeat,
    numbers that mean nothing; it only shows that every scenario runs end to end."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def env_float(name: str, default: float, quick_value: float | None = None) -> float:
    if quick_value is not None and quick() and name not in os.environ:
        return quick_value
    return float(os.environ.get(name, default))


def env_int(name: str, default: int, quick_value: int | None = None) -> int:
    if quick_value is not None and quick() and name not in os.environ:
        return quick_value
    return int(os.environ.get(name, default))


def env_ints(name: str, default: list[int], quick_value: list[int] | None = None) -> list[int]:
    """A comma-separated list of counts, e.g. BENCH_GROWTH_CONNS=1,16,256."""
    if name in os.environ:
        return [int(part) for part in os.environ[name].split(",") if part.strip()]
    return list(quick_value if quick_value is not None and quick() else default)
