"""Run every scenario in one invocation, then write the tables and the plot.

    python -m bench.run_all          # or: scripts/bench, make bench

About 7-8 minutes on 2 cores with the defaults; BENCH_REPEATS, BENCH_DURATION,
BENCH_WARMUP, BENCH_REPEATS_MEMORY and BENCH_SLOW_SECONDS shorten or lengthen it.
"""

from __future__ import annotations

import time

from bench import (
    head_of_line,
    history_cost,
    hooks_cost,
    idle_memory,
    observability,
    report,
    slow_consumer,
    throughput,
)


def main() -> None:
    start = time.monotonic()
    for scenario in (
        throughput,
        head_of_line,
        hooks_cost,
        idle_memory,
        slow_consumer,
        history_cost,
        observability,
    ):
        print(f"== {scenario.__name__} ({time.monotonic() - start:.0f} s)", flush=True)
        scenario.main()
    print(f"== report ({time.monotonic() - start:.0f} s)", flush=True)
    report.main()
    print(f"== done in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
