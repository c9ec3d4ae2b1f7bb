"""Where the server's time goes: py-spy on a contender under 16 x 16 echo load.

    python -m bench.profile [contender ...]      # default: bare router

py-spy samples the pinned server process from outside (no instrumentation in the app)
while the load generator runs; the collapsed stacks land in
`bench/results/profile-<contender>.txt` and the summary prints the share of samples
spent in each function (self time) and under each package (inclusive time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench._harness import RESULTS, Server, loadgen

SECONDS = 6
#: BENCH_PROFILE_NATIVE=1 adds C frames (uvloop, the kernel write) to the stacks
NATIVE = ["--native"] if os.environ.get("BENCH_PROFILE_NATIVE") else []


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed in this environment (scripts/bench installs it)")
    return found


def _package(frame: str) -> str:
    """A frame `func (pkg/module.py:line)` -> `pkg`, or `pkg/module.py` for this project."""
    path = frame.rsplit("(", 1)[-1].rstrip(")").split(":", 1)[0]
    if path.startswith(("observable_socket_asgi/", "fastapi_adapter/", "bench/")):
        return path
    return path.split("/", 1)[0]


def profile(name: str) -> Path:
    out = RESULTS / f"profile-{name}.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    server = Server(name)
    try:
        spy = subprocess.Popen(
            [
                _py_spy(),
                "record",
                "--pid",
                str(server.proc.pid),
                "--duration",
                str(SECONDS),
                "--rate",
                "400",
                "--format",
                "raw",
                "--output",
                str(out),
                *([] if NATIVE else ["--nonblocking"]),
                *NATIVE,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        result = loadgen(
            {
                "mode": "throughput",
                "url": server.url,
                "conns": 16,
                "inflight": 16,
                "warmup": 0.2,
                "duration": SECONDS - 1.5,
                "route": "echo",
                "server_pid": server.proc.pid,
            }
        )
        _, err = spy.communicate(timeout=SECONDS + 30)
        if spy.returncode != 0:
            raise SystemExit(f"py-spy failed: {err.strip()}")
    finally:
        server.stop()
    print(f"{name}: {result['rate']:.0f} msg/s, {result['server_us_per_msg']:.1f} us/msg")
    return out


def summarize(path: Path, top: int = 25) -> None:
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for package in {_package(frame) for frame in frames}:
            packages[package] += samples
    if not total:
        print("no samples")
        return
    print(f"  self time, top {top} of {total} samples:")
    for frame, samples in own.most_common(top):
        print(f"    {samples / total:6.1%}  {frame}")
    print("  inclusive time by package/module:")
    for package, samples in packages.most_common(20):
        print(f"    {samples / total:6.1%}  {package}")


def main() -> None:
    for name in sys.argv[1:] or ["bare", "router"]:
        summarize(profile(name))


if __name__ == "__main__":
    main()
