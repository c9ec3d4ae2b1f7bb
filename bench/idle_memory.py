"""Scenario 4: memory per idle connection, at 1,000 and 5,000 connections.

    python -m bench.idle_memory

Each contender gets a fresh server. The load generator opens one connection first (so
lazy imports and first-use allocations are not counted), then 1,000, then 5,000, each
answered once so the app is really serving it, and leaves them idle; the server's RSS is
read after each step settles. Growth per connection = (RSS at N - RSS at 1) / (N - 1).
Both processes raise RLIMIT_NOFILE to the hard limit. Environment: BENCH_REPEATS_MEMORY (1).
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench._harness import (
    Server,
    contenders,
    env_int,
    env_ints,
    loadgen_interactive,
    order,
    save,
)

STEPS = [1, 1000, 5000]
SETTLE = 0.5


def measure(name: str, steps: list[int] = STEPS) -> dict[str, Any]:
    """RSS of a fresh `name` server at each step, KiB."""
    server = Server(name)
    try:
        client = loadgen_interactive(
            {"mode": "idle", "url": server.url, "steps": steps, "proto": server.proto}
        )
        assert client.stdin is not None and client.stdout is not None
        rss: dict[int, int] = {0: server.rss_kib()}
        try:
            for _ in steps:
                line = client.stdout.readline()
                if not line:
                    raise RuntimeError(f"{name}: load generator ended early")
                opened = int(json.loads(line)["open"])
                time.sleep(SETTLE)
                rss[opened] = server.rss_kib()
                client.stdin.write("\n")
                client.stdin.flush()
            client.wait(60)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    finally:
        server.stop()
    base = rss[steps[0]]
    return {
        "rss_kib": rss,
        "kib_per_conn": {n: (rss[n] - base) / (n - steps[0]) for n in steps[1:]},
    }


def main() -> None:
    names, missing = contenders()
    repeats = env_int("BENCH_REPEATS_MEMORY", 1)
    steps = env_ints("BENCH_MEMORY_STEPS", STEPS, [1, 20, 50])
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for name in order(names, repeat):
            result = measure(name, steps)
            result.update(contender=name, repeat=repeat)
            runs.append(result)
            per = result["kib_per_conn"]
            print(
                f"r{repeat} {name:<10} "
                + "  ".join(f"{n}: {kib:5.1f} KiB/conn" for n, kib in per.items()),
                flush=True,
            )
    print(f"wrote {save('idle_memory', {'runs': runs, 'missing': missing, 'steps': steps})}")


if __name__ == "__main__":
    main()
