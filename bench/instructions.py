"""Instructions per message, counted by callgrind: a figure a shared machine cannot move.

    python -m bench.instructions [workload ...] [--contenders bare,router]
    python -m bench.instructions --run WORKLOAD CONTENDER N     # the child valgrind runs

Wall-clock and CPU-time figures drift with whatever else runs on the machine; the number of
instructions a piece of Python executes does not. Each workload drives a contender of
`bench/apps.py` in process (plain ASGI calls on uvloop, no sockets, no uvicorn: what is
counted is the app's own work), under `valgrind --tool=callgrind`, once with N1 and once
with N2 units; (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one unit with start-up and
import costs cancelled out.

- `echo`: one connection, N echo requests (the JS client's frame); unit = one request.
  `receive()` returns at once, as a server's does when frames are already queued.
- `echo_wait`: the same, but each frame arrives from a loop callback, the way a real server
  delivers it when the client has one request in flight (256 x 1): the connection's task
  suspends and is woken for every frame, so what is counted includes passing that wake-up
  through every coroutine between the server's task and the app's `receive()`.
- `ping`: as `echo_wait`, but each frame is the JS client's heartbeat (route `PING`, a
  string uuid), answered with PONG; unit = one heartbeat. Every connection sends one per
  minute and is woken for it, so this is what idle connections cost. The bare app answers
  it as it answers any frame (an echo): it knows no PING.
- `fanout`: 100 subscribers, then one `fanout` request for N pushes; unit = one push
  delivered to one subscriber.
- `handshake`: N connections, each connect -> accept -> disconnect; unit = one
  connection (the router's `router_access` runs an async access_logic).

Use it to judge a change to the hot path: run it before and after; differences of a few
per cent are real. Results: bench/results/instructions.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from bench._harness import ROOT, save

WORKLOADS = {
    "echo": (2000, 12000),
    "echo_wait": (2000, 12000),
    "ping": (2000, 12000),
    "fanout": (50, 250),
    "handshake": (200, 1200),
}
CONTENDERS = ["bare", "router"]
SUBSCRIBERS = 100
FRAME = '{"uuid":%d,"route":"echo","headers":{"token":"abc"},"payload":[1,2,3,4],"status":200}'
#: the JS client's heartbeat, as `bench/loadgen.py` sends it
PING_FRAME = (
    '{"uuid":"%08x-0000-4000-8000-000000000000","route":"PING",'
    '"headers":{"token":"abc"},"payload":{},"status":200}'
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n")[0]
    )
    p.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--run", nargs=3, metavar=("WORKLOAD", "CONTENDER", "N"))
    return p


def _scope(query: bytes = b"") -> dict[str, Any]:
    from observable_socket_asgi.testing import websocket_scope

    return websocket_scope(query_string=query)


async def _echo(app: Any, n: int, wait: bool = False, frame: str = FRAME) -> int:
    """One connection, `n` echo requests; with `wait`, each frame arrives from a loop
    callback (the connection's task is woken per frame) instead of being already queued."""
    loop = asyncio.get_running_loop()
    messages: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    messages += [{"type": "websocket.receive", "text": frame % i} for i in range(n)]
    messages.append({"type": "websocket.disconnect", "code": 1000})
    feed = iter(messages)
    sent = 0

    async def receive_queued() -> dict[str, Any]:
        return next(feed)

    async def receive_woken() -> dict[str, Any]:
        # as a server's queue: the frame is handed over by a callback the loop runs later
        arrived: asyncio.Future[dict[str, Any]] = loop.create_future()
        loop.call_soon(arrived.set_result, next(feed))
        return await arrived

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1

    await app(_scope(), receive_woken if wait else receive_queued, send)
    return sent - 1  # the accept


async def _fanout(app: Any, n: int) -> int:
    loop = asyncio.get_running_loop()
    delivered = 0
    leave = loop.create_future()
    subscribed = 0
    all_subscribed = loop.create_future()

    def subscriber(i: int) -> Any:
        steps = iter(
            [
                {"type": "websocket.connect"},
                {
                    "type": "websocket.receive",
                    "text": f'{{"uuid":{i},"route":"subscribe","headers":{{}},"payload":null}}',
                },
            ]
        )

        async def receive() -> dict[str, Any]:
            step = next(steps, None)
            if step is not None:
                return step
            await leave
            return {"type": "websocket.disconnect", "code": 1000}

        async def send(message: dict[str, Any]) -> None:
            nonlocal delivered, subscribed
            text = message.get("text")
            if text is None:
                return
            if '"route"' in text:
                delivered += 1
            else:
                subscribed += 1
                if subscribed == SUBSCRIBERS:
                    all_subscribed.set_result(None)

        return app(_scope(), receive, send)

    tasks = [loop.create_task(subscriber(i)) for i in range(SUBSCRIBERS)]
    await all_subscribed
    await _echo_one(app, f'{{"uuid":1,"route":"fanout","headers":{{}},"payload":{{"count":{n}}}}}')
    leave.set_result(None)
    await asyncio.gather(*tasks)
    return delivered


async def _echo_one(app: Any, frame: str) -> None:
    feed = iter(
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": frame},
            {"type": "websocket.disconnect", "code": 1000},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(feed)

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(_scope(), receive, send)


async def _handshake(app: Any, n: int) -> int:
    accepted = 0
    for _ in range(n):
        feed = iter([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])

        async def receive(feed: Any = feed) -> dict[str, Any]:
            return next(feed)

        async def send(message: dict[str, Any]) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted += 1

        await app(_scope(b"token=abc"), receive, send)
    return accepted


def child(workload: str, name: str, n: int) -> None:
    """What runs under valgrind: build the app, drive it, print the units it served."""
    import uvloop

    from bench.apps import build

    app = build(name)
    drives: dict[str, Any] = {
        "echo": _echo,
        # a partial, not a wrapper coroutine: one more coroutine in the chain that each
        # wake-up passes through would be counted against every contender
        "echo_wait": functools.partial(_echo, wait=True),
        "ping": functools.partial(_echo, wait=True, frame=PING_FRAME),
        "fanout": _fanout,
        "handshake": _handshake,
    }
    drive = drives[workload]
    done = uvloop.run(drive(app, n))
    print(json.dumps({"units": done}))


def _callgrind(workload: str, name: str, n: int) -> tuple[int, int]:
    """(instructions, units) of one child run under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.instructions",
                "--run",
                workload,
                name,
                str(n),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{workload}/{name} failed: {proc.stderr[-2000:]}")
        with open(out) as f:
            text = f.read()
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if match is None:
        raise RuntimeError("no instruction total in the callgrind output")
    units = json.loads(proc.stdout.strip().splitlines()[-1])["units"]
    return int(match.group(1)), int(units)


def measure(workload: str, name: str) -> dict[str, Any]:
    n1, n2 = WORKLOADS[workload]
    ir1, u1 = _callgrind(workload, name, n1)
    ir2, u2 = _callgrind(workload, name, n2)
    return {
        "workload": workload,
        "contender": name,
        "units": [u1, u2],
        "instructions": [ir1, ir2],
        "per_unit": (ir2 - ir1) / (u2 - u1),
    }


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.run:
        workload, name, n = args.run
        child(workload, name, int(n))
        return
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads {sorted(unknown)}; expected some of {list(WORKLOADS)}")
    runs = []
    for workload in args.workloads:
        for name in args.contenders.split(","):
            if workload == "handshake" and name == "router":
                names = ["router", "router_access"]
            else:
                names = [name]
            for contender in names:
                run = measure(workload, contender)
                runs.append(run)
                print(f"{workload:<10} {contender:<14} {run['per_unit']:>10,.0f} instructions/unit")
    print(f"wrote {save('instructions', {'runs': runs})}")


if __name__ == "__main__":
    main()
