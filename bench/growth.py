"""Scenario 8: cost curves as connections and subscribers grow.

    python -m bench.growth [--parts cpu,memory,fanout] [--quick]

- `cpu`: server CPU time per message at N connections x 1 request in flight, N in
  BENCH_GROWTH_CONNS (1, 16, 256, 1000, 10000), echo route, contenders alternated.
- `memory`: a fresh server per contender; RSS once 1 connection is open, then at each N
  (each connection answered once, then idle); the slope of RSS over N is the memory per
  connection.
- `fanout`: the fan-out scenario's round (100 pushes of ~100 B, timed until the last
  subscriber has the last push) for S subscribers in BENCH_GROWTH_SUBSCRIBERS
  (10, 100, 1000, 10000).

Both processes raise RLIMIT_NOFILE to the hard limit (`bench/server.py`, `bench/loadgen.py`).
The report fits a straight line to each curve and states its slope. Environment:
BENCH_REPEATS (3; the fan-out curve uses BENCH_GROWTH_REPEATS, 2), BENCH_DURATION (1.5),
BENCH_WARMUP (0.5).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench import idle_memory
from bench._harness import contenders, env_float, env_int, env_ints, order, save, servers
from bench.fanout import run_fanout, started
from bench.throughput import run_config

PARTS = ["cpu", "memory", "fanout"]
CONTENDERS = ["bare", "router"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    return p


def cpu_curve(names: list[str], conns: list[int], repeats: int) -> list[dict[str, Any]]:
    duration = env_float("BENCH_DURATION", 1.5, 0.3)
    warmup = env_float("BENCH_WARMUP", 0.5, 0.1)
    runs: list[dict[str, Any]] = []
    with servers(names) as running:
        for repeat in range(repeats):
            for n in conns:
                for name in order(names, repeat * 100 + n):
                    result = run_config(running[name], n, 1, "echo", duration, warmup)
                    result.update(contender=name, conns=n, repeat=repeat)
                    runs.append(result)
                    print(
                        f"cpu r{repeat} {n:>6} conns {name:<8} {result['rate']:>8.0f} msg/s "
                        f"{result['server_us_per_msg'] or 0:6.1f} us/msg",
                        flush=True,
                    )
    return runs


def memory_curve(names: list[str], conns: list[int], repeats: int) -> list[dict[str, Any]]:
    steps = sorted({1, *conns})
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for name in order(names, repeat):
            result = idle_memory.measure(name, steps)
            result.update(contender=name, repeat=repeat)
            runs.append(result)
            print(
                f"mem r{repeat} {name:<8} "
                + "  ".join(f"{n}: {kib / 1024:6.1f} MiB" for n, kib in result["rss_kib"].items()),
                flush=True,
            )
    return runs


def fanout_curve(names: list[str], sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    pushes = env_int("BENCH_FANOUT_PUSHES", 100, 5)
    runs: list[dict[str, Any]] = []
    with started(names) as running:
        for repeat in range(repeats):
            for size in sizes:
                for name in order(names, repeat * 100 + size):
                    result = run_fanout(running[name], size, pushes, 1, warmup_pushes=5)
                    result.update(contender=name, subscribers=size, pushes=pushes, repeat=repeat)
                    runs.append(result)
                    print(
                        f"fan r{repeat} {size:>6} subs {name:<8} "
                        f"{result['median_s'] * 1e3:8.1f} ms  "
                        f"{result['server_us_per_frame']:5.1f} us/frame",
                        flush=True,
                    )
    return runs


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; expected some of {PARTS}")
    names, missing = contenders([n for n in args.contenders.split(",") if n])
    conns = env_ints("BENCH_GROWTH_CONNS", [1, 16, 256, 1000, 10000], [1, 16])
    sizes = env_ints("BENCH_GROWTH_SUBSCRIBERS", [10, 100, 1000, 10000], [10, 20])
    repeats = env_int("BENCH_REPEATS", 3, 1)
    data: dict[str, Any] = {"missing": missing, "conns": conns, "subscribers": sizes}
    if "cpu" in parts:
        data["cpu"] = cpu_curve(names, conns, repeats)
    if "memory" in parts:
        data["memory"] = memory_curve(names, conns, env_int("BENCH_REPEATS_MEMORY", 1))
    if "fanout" in parts:
        data["fanout"] = fanout_curve(names, sizes, env_int("BENCH_GROWTH_REPEATS", 2, 1))
    print(f"wrote {save('growth', data)}")


if __name__ == "__main__":
    main()
