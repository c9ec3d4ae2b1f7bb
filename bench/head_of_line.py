"""Scenario 2: head-of-line blocking on one connection.

    python -m bench.head_of_line

One connection sends 16 requests to `slow` (awaits 50 ms) at once, then `echo` requests one
at a time until every slow answer is in. A server that serves a connection's requests one
after another takes 16 x 50 ms and answers the first fast request only after that; a
concurrent one finishes in about 50 ms and answers fast requests in well under 5 ms.
Environment: BENCH_REPEATS (3).
"""

from __future__ import annotations

from typing import Any

from bench._harness import contenders, env_int, loadgen, order, save, servers


def main() -> None:
    names, missing = contenders()
    repeats = env_int("BENCH_REPEATS", 3, 1)
    runs: list[dict[str, Any]] = []
    with servers(names) as running:
        for repeat in range(repeats):
            for name in order(names, repeat):
                result = loadgen(
                    {"mode": "hol", "url": running[name].url, "proto": running[name].proto}
                )
                result.update(contender=name, repeat=repeat)
                runs.append(result)
                print(
                    f"r{repeat} {name:<10} total {result['total_ms']:7.1f} ms  "
                    f"fast n={result['fast_count']:<4} p99 {result['fast_ms']['p99']:7.2f} ms",
                    flush=True,
                )
    print(f"wrote {save('head_of_line', {'runs': runs, 'missing': missing})}")


if __name__ == "__main__":
    main()
