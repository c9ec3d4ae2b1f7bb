"""Scenario 6: fan-out, one topic, many subscribers, until the last one has the last push.

    python -m bench.fanout [--subscribers 1000] [--pushes 100] [--quick]

`subscribers` connections subscribe to one topic; a publisher connection asks the server
for `pushes` pushes of about 100 B (the envelope, route = topic); the time runs from that
request until the last subscriber has received the last push. Contenders:

- `bare`: a bare ASGI app keeping the subscribers' `send` callables in a dict and awaiting
  each in turn for every push (the frame encoded once): the baseline (1.00);
- `router`: `router.publish(topic, ...)` with the in-memory backplane;
- `router_redis`: the same on the Redis backplane, through a real redis-server this
  scenario starts: the subscribers on one worker, the publisher on another (each its own
  uvicorn process), so every push crosses Redis;
- `socketio`: python-socketio, `await sio.emit("push", envelope, room=...)`.

Each repeat runs every contender in a seeded order, one warm-up round then `rounds`
measured rounds each; the report divides by bare's median of the same repeat. Server CPU
is that of the subscribers' server (ticks of 10 ms: meaningful at 1,000 x 100 and up).
Environment: BENCH_REPEATS (3), BENCH_FANOUT_SUBSCRIBERS (1000), BENCH_FANOUT_PUSHES (100),
BENCH_FANOUT_ROUNDS (3).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from bench._harness import (
    CLIENT_CORE,
    RedisServer,
    Server,
    available,
    env_int,
    loadgen,
    order,
    save,
)

CONTENDERS = ["bare", "router", "router_redis", "socketio"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--subscribers", type=int)
    p.add_argument("--pushes", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--repeats", type=int)
    return p


class Contender:
    """The subscribers' server, and for the Redis backplane the publisher's server too."""

    def __init__(self, name: str, redis: RedisServer | None) -> None:
        self.name = name
        env = {"BENCH_REDIS_URL": redis.url} if redis is not None else None
        self.server = Server(name, env=env)
        # the publishing worker shares the client's core: it sends 100 PUBLISH, little else
        self.publisher = Server(name, env=env, core=CLIENT_CORE) if redis is not None else None

    def stop(self) -> None:
        self.server.stop()
        if self.publisher is not None:
            self.publisher.stop()


@contextlib.contextmanager
def started(names: list[str]) -> Iterator[dict[str, Contender]]:
    redis = RedisServer() if "router_redis" in names else None
    running: dict[str, Contender] = {}
    try:
        for name in names:
            running[name] = Contender(name, redis if name == "router_redis" else None)
        yield running
    finally:
        for contender in running.values():
            contender.stop()
        if redis is not None:
            redis.stop()


def run_fanout(
    contender: Contender, subscribers: int, pushes: int, rounds: int, warmup_pushes: int = 0
) -> dict[str, Any]:
    """One load-generator run: subscribe, a warm-up round, then `rounds` timed rounds."""
    server, publisher = contender.server, contender.publisher
    return loadgen(
        {
            "mode": "fanout",
            "url": server.url,
            "publish_url": publisher.url if publisher is not None else None,
            "proto": server.proto,
            "subscribers": subscribers,
            "pushes": pushes,
            "rounds": rounds,
            "warmup_pushes": warmup_pushes or pushes,
            "server_pid": server.proc.pid,
            "publisher_pid": publisher.proc.pid if publisher is not None else None,
        },
        timeout=600,
    )


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    subscribers = args.subscribers or env_int("BENCH_FANOUT_SUBSCRIBERS", 1000, 20)
    pushes = args.pushes or env_int("BENCH_FANOUT_PUSHES", 100, 5)
    rounds = args.rounds or env_int("BENCH_FANOUT_ROUNDS", 3, 1)
    repeats = args.repeats or env_int("BENCH_REPEATS", 3, 1)
    requested = [n for n in args.contenders.split(",") if n]
    missing: dict[str, str] = {}
    if "router_redis" in requested:
        try:
            RedisServer().stop()
        except RuntimeError as exc:
            missing["router_redis"] = str(exc)
    for name in requested:
        if name != "router_redis" and (why := available(name)) is not None:
            missing[name] = why
    names = [n for n in requested if n not in missing]
    runs: list[dict[str, Any]] = []
    with started(names) as running:
        for repeat in range(repeats):
            for name in order(names, repeat):
                result = run_fanout(running[name], subscribers, pushes, rounds)
                result.update(contender=name, repeat=repeat, subscribers=subscribers, pushes=pushes)
                runs.append(result)
                print(
                    f"r{repeat} {name:<13} {subscribers} x {pushes}: "
                    f"{result['median_s'] * 1e3:8.1f} ms  {result['pushes_per_s']:>9.0f} pushes/s"
                    f"  {result['server_us_per_frame']:5.1f} us/frame (server CPU)"
                    f"  cpu server {result['server_cpu']:.0%} client {result['client_cpu']:.0%}",
                    flush=True,
                )
    path = save(
        "fanout",
        {
            "runs": runs,
            "missing": missing,
            "repeats": repeats,
            "subscribers": subscribers,
            "pushes": pushes,
            "rounds": rounds,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
