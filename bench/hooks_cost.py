"""Scenario 3: what the four hooks cost, 16 connections x 16 in flight.

    python -m bench.hooks_cost

The `hooks` route runs data_check + access + hydrate + dehydrate (all async, all trivial)
around the same echo as the bare `echo` route, on the routers that have hooks; the `typed`
route is the echo with a declared payload and response type (this project's routers only),
reported as a ratio to the untyped echo of the same router. The bare echo app runs
alongside as the baseline. Environment: BENCH_REPEATS (3),
BENCH_DURATION (1.5 s), BENCH_WARMUP (0.5 s).
"""

from __future__ import annotations

from typing import Any

from bench._harness import contenders, env_float, env_int, order, save, servers
from bench.throughput import run_config

ROUTERS = ["original", "router", "adapter"]
#: the routers with typed routes
TYPED = ("router", "adapter")
CONNS, INFLIGHT = 16, 16


def main() -> None:
    names, missing = contenders(["bare", *ROUTERS])
    repeats = env_int("BENCH_REPEATS", 3, 1)
    duration = env_float("BENCH_DURATION", 1.5, 0.2)
    warmup = env_float("BENCH_WARMUP", 0.5, 0.1)
    cases = [("bare", "echo")] + [
        (name, route)
        for name in names
        if name != "bare"
        for route in ("echo", "hooks", *(("typed",) if name in TYPED else ()))
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
    for name in TYPED:
        ratio = typed_ratio(runs, name)
        if ratio is not None:
            print(f"{name}: typed / untyped echo = {ratio:.2f} (median of {repeats})")
    print(f"wrote {save('hooks_cost', {'runs': runs, 'missing': missing})}")


def typed_ratio(runs: list[dict[str, Any]], name: str) -> float | None:
    """Median over repeats of the typed route's rate / the untyped echo's, one router."""
    rates = {(r["route"], r["repeat"]): r["rate"] for r in runs if r["contender"] == name}
    ratios = sorted(
        rates[("typed", i)] / rates[("echo", i)]
        for (route, i) in rates
        if route == "typed" and rates.get(("echo", i))
    )
    if not ratios:
        return None
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


if __name__ == "__main__":
    main()
