"""Run every scenario in one invocation, then write the tables and the plot.

    python -m bench.run_all          # or: scripts/bench, make bench

About 20 minutes on 2 cores with the defaults; BENCH_REPEATS, BENCH_DURATION,
BENCH_WARMUP, BENCH_REPEATS_MEMORY, BENCH_SLOW_SECONDS and the fan-out and growth counts
(see each scenario) shorten or lengthen it; BENCH_QUICK=1 (`scripts/bench --quick`) runs
everything with tiny counts, a smoke run whose numbers mean nothing.
"""

from __future__ import annotations

import time

from bench import (
    fanout,
    growth,
    handshake,
    head_of_line,
    history_cost,
    hooks_cost,
    idle_memory,
    observability,
    report,
    slow_consumer,
    throughput,
)

SCENARIOS = (
    throughput,
    head_of_line,
    hooks_cost,
    idle_memory,
    slow_consumer,
    history_cost,
    observability,
    fanout,
    handshake,
    growth,
)


def main() -> None:
    start = time.monotonic()
    for scenario in SCENARIOS:
        print(f"== {scenario.__name__} ({time.monotonic() - start:.0f} s)", flush=True)
        if scenario in (fanout, handshake, growth, throughput):
            scenario.main([])
        else:
            scenario.main()
    print(f"== report ({time.monotonic() - start:.0f} s)", flush=True)
    report.main()
    print(f"== done in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
