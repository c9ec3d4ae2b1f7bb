"""Scenario 1: throughput and latency, N connections x K requests in flight, echo route.

    python -m bench.throughput
    python -m bench.throughput --contenders bare,router,channels --configs 16x16,256x1

Every contender runs every (N, K) once per repeat, in a seeded order that changes per
repeat; the report divides each figure by the bare echo app's of the same repeat and quotes
the median. Environment: BENCH_REPEATS (3), BENCH_DURATION (1.5 s measured),
BENCH_WARMUP (0.5 s, not measured).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench._harness import (
    contenders,
    env_float,
    env_int,
    loadgen,
    order,
    parse_configs,
    quick,
    save,
    servers,
)

CONFIGS = [(1, 1), (1, 16), (16, 1), (16, 16), (64, 1), (64, 16), (256, 1), (256, 16)]


def run_config(
    server: Any, conns: int, inflight: int, route: str, duration: float, warmup: float
) -> dict[str, Any]:
    """One load-generator run against `server`."""
    result = loadgen(
        {
            "mode": "throughput",
            "url": server.url,
            "conns": conns,
            "inflight": inflight,
            "warmup": warmup,
            "duration": duration,
            "route": route,
            "server_pid": server.proc.pid,
            "proto": server.proto,
        }
    )
    result["loadavg"] = os.getloadavg()[0]
    return result


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--contenders", default="", help="names (default: every contender)")
    parser.add_argument("--configs", default="", help="conns x inflight (default: all eight)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    names, missing = contenders([n for n in args.contenders.split(",") if n] or None)
    configs = parse_configs(args.configs) or ([(1, 1), (16, 16)] if quick() else CONFIGS)
    repeats = env_int("BENCH_REPEATS", 3, 1)
    duration = env_float("BENCH_DURATION", 1.5, 0.2)
    warmup = env_float("BENCH_WARMUP", 0.5, 0.1)
    runs: list[dict[str, Any]] = []
    with servers(names) as running:
        for repeat in range(repeats):
            for conns, inflight in configs:
                for name in order(names, repeat * 100 + conns + inflight):
                    result = run_config(running[name], conns, inflight, "echo", duration, warmup)
                    result.update(contender=name, conns=conns, inflight=inflight, repeat=repeat)
                    runs.append(result)
                    print(
                        f"r{repeat} {conns:>3}x{inflight:<2} {name:<10} "
                        f"{result['rate']:>9.0f} msg/s  p99 {result['latency_ms']['p99']:7.2f} ms"
                        f"  client cpu {result['client_cpu']:.0%}"
                        f"  server cpu {result['server_cpu']:.0%}",
                        flush=True,
                    )
    path = save(
        "throughput",
        {
            "runs": runs,
            "missing": missing,
            "repeats": repeats,
            "duration": duration,
            "warmup": warmup,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
