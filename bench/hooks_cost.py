"""Scenario 3: what the four hooks cost, 16 connections x 16 in flight.

    python -m bench.hooks_cost

The `hooks` route runs data_check + access + hydrate + dehydrate (all async, all trivial)
around the same echo as the bare `echo` route, on the routers that have hooks; the bare
echo app runs alongside as the baseline. Environment: BENCH_REPEATS (3),
BENCH_DURATION (1.5 s), BENCH_WARMUP (0.5 s).
"""

from __future__ import annotations

from typing import Any

from bench._harness import contenders, env_float, env_int, order, save, servers
from bench.throughput import run_config

ROUTERS = ["original", "router", "adapter"]
CONNS, INFLIGHT = 16, 16


def main() -> None:
    names, missing = contenders(["bare", *ROUTERS])
    repeats = env_int("BENCH_REPEATS", 3, 1)
    duration = env_float("BENCH_DURATION", 1.5, 0.2)
    warmup = env_float("BENCH_WARMUP", 0.5, 0.1)
    cases = [("bare", "echo")] + [
        (name, route) for name in names if name != "bare" for route in ("echo", "hooks")
    ]
    runs: list[dict[str, Any]] = []
    with servers(names) as running:
        for repeat in range(repeats):
            for name, route in order(cases, repeat):
                result = run_config(running[name], CONNS, INFLIGHT, route, duration, warmup)
                result.update(contender=name, route=route, repeat=repeat)
                runs.append(result)
                print(
                    f"r{repeat} {name:<10} {route:<6} {result['rate']:>9.0f} msg/s  "
                    f"{result['server_us_per_msg'] or 0:6.1f} us/msg  "
                    f"p99 {result['latency_ms']['p99']:7.2f} ms",
                    flush=True,
                )
    print(f"wrote {save('hooks_cost', {'runs': runs, 'missing': missing})}")


if __name__ == "__main__":
    main()
