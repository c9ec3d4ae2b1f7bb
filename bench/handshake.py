"""Scenario 7: connection set-up rate, handshakes per second, access_logic on and off.

    python -m bench.handshake [--concurrency 16] [--quick]

`concurrency` client loops each open a WebSocket, wait until it can carry a request (for
Socket.IO: the namespace joined, one more round trip), close it and start over, for
`BENCH_DURATION` seconds after `BENCH_WARMUP`. Every contender gets the same URL with
`?token=abc`: `router_access` runs an async `access_logic` that checks it, the others
ignore it. Figures are ratios to the bare ASGI app (accepts, then waits for the close) of
the same repeat; server CPU per handshake is steadier than the rate on a shared machine.
Environment: BENCH_REPEATS (3), BENCH_DURATION (1.5), BENCH_WARMUP (0.5).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench._harness import contenders, env_float, env_int, loadgen, order, save, servers
from bench.apps import ACCESS_TOKEN

CONTENDERS = ["bare", "router", "router_access", "adapter", "socketio"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.handshake", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeats", type=int)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    repeats = args.repeats or env_int("BENCH_REPEATS", 3, 1)
    duration = env_float("BENCH_DURATION", 1.5, 0.3)
    warmup = env_float("BENCH_WARMUP", 0.5, 0.1)
    names, missing = contenders([n for n in args.contenders.split(",") if n])
    runs: list[dict[str, Any]] = []
    with servers(names) as running:
        for repeat in range(repeats):
            for name in order(names, repeat):
                server = running[name]
                sep = "&" if "?" in server.url else "?"
                result = loadgen(
                    {
                        "mode": "connect",
                        "url": f"{server.url}{sep}token={ACCESS_TOKEN}",
                        "proto": server.proto,
                        "concurrency": args.concurrency,
                        "warmup": warmup,
                        "duration": duration,
                        "server_pid": server.proc.pid,
                    }
                )
                result.update(contender=name, repeat=repeat)
                runs.append(result)
                print(
                    f"r{repeat} {name:<14} {result['rate']:>7.0f} handshakes/s  "
                    f"{result['server_us_per_handshake'] or 0:6.0f} us/handshake  "
                    f"errors {result['errors']}",
                    flush=True,
                )
    path = save(
        "handshake",
        {
            "runs": runs,
            "missing": missing,
            "repeats": repeats,
            "duration": duration,
            "warmup": warmup,
            "concurrency": args.concurrency,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
