"""Scenario 6: what metrics and tracing cost, 16 connections x 16 in flight, echo route.

    python -m bench.observability

The same router with nothing on (the baseline), with `metrics_url` (prometheus_client),
and with `tracing` (the OpenTelemetry SDK recording every span into a batch processor
whose exporter discards them), alternated in a seeded order per repeat. Each figure is
divided by the plain router's of the same repeat; the median ratios of throughput and of
server CPU time per message are printed and saved.
Off is the plain router itself: with neither option the per-message path has only an
`is None` test more. Environment: BENCH_REPEATS (5), BENCH_DURATION (1.5 s),
BENCH_WARMUP (0.5 s).
"""

from __future__ import annotations

from typing import Any

from bench._harness import contenders, env_float, env_int, median, order, save, servers
from bench.throughput import run_config

CASES = ["router", "router_metrics", "router_tracing"]
CONNS, INFLIGHT = 16, 16


def main() -> None:
    names, missing = contenders(CASES)
    if "router" not in names:
        raise SystemExit(f"the plain router cannot run: {missing}")
    repeats = env_int("BENCH_REPEATS", 5)
    duration = env_float("BENCH_DURATION", 1.5)
    warmup = env_float("BENCH_WARMUP", 0.5)
    runs: list[dict[str, Any]] = []
    ratios: dict[str, list[float]] = {name: [] for name in names}
    # server CPU per message, as a ratio to the plain router's: steadier than the rate when
    # the machine is shared, since it does not count time the server waited for a core
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with servers(names) as running:
        for repeat in range(repeats):
            rates: dict[str, float] = {}
            costs: dict[str, float] = {}
            for name in order(names, repeat):
                result = run_config(running[name], CONNS, INFLIGHT, "echo", duration, warmup)
                result.update(contender=name, repeat=repeat)
                runs.append(result)
                rates[name] = result["rate"]
                costs[name] = result["server_us_per_msg"] or float("nan")
                print(
                    f"r{repeat} {name:<15} {result['rate']:>9.0f} msg/s  "
                    f"{result['server_us_per_msg'] or 0:6.1f} us/msg  "
                    f"p99 {result['latency_ms']['p99']:7.2f} ms",
                    flush=True,
                )
            for name, rate in rates.items():
                ratios[name].append(rate / rates["router"])
                cpu[name].append(costs[name] / costs["router"])
    summary = {name: median(values) for name, values in ratios.items()}
    cpu_summary = {name: median(values) for name, values in cpu.items()}
    for name, ratio in summary.items():
        print(
            f"{name:<15} throughput {ratio:.3f} x the plain router, "
            f"server CPU per message {cpu_summary[name]:.3f} x"
        )
    path = save(
        "observability",
        {"runs": runs, "missing": missing, "median_ratio": summary,
         "median_cpu_ratio": cpu_summary, "conns": CONNS,
         "inflight": INFLIGHT, "repeats": repeats, "duration": duration},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
