"""The load generator: a picows client in its own process, pinned to its own core.

    python -m bench.loadgen '<json spec>'

It prints one JSON object per result line on stdout. Modes:

- `throughput`: `conns` connections, each keeping `inflight` requests outstanding (a new
  one leaves as each answer arrives), for `warmup` + `duration` seconds; counts answers and
  request-to-answer latency inside the measured window only.
- `hol`: one connection; 16 `slow` requests at once, then `echo` requests one at a time
  until every slow answer is in; fast latencies and the total time.
- `idle`: opens connections up to each count in `steps` (one echo each, so the app is
  serving them), prints `{"open": n}` and waits for a line on stdin before the next step.
- `slow`: sends one `push` request, stops reading, waits for a line on stdin, then reads
  again and reports what arrived and how the connection ended.

Its own CPU use (user + system, as a fraction of one core) is in every throughput result,
to show it is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from typing import Any

import orjson
import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.server import raise_file_limit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAYLOAD = b'"headers":{"token":"abc"},"payload":[1,2,3,4],"status":200}'


def _frame_suffix(route: str) -> bytes:
    """Everything after the uuid: the JS client's frame shape (see PROTOCOL.md)."""
    return b',"route":"' + route.encode() + b'",' + PAYLOAD


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` (the server), 0 when unknown."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _percentiles(samples: list[int]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds from nanosecond samples."""
    if not samples:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(samples)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return ordered[min(last, int(q * len(ordered)))] / 1e6

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[last] / 1e6}


class _Closed:
    """How a connection ended, as the client saw it."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.frames = 0


class _Base(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.closed = _Closed()
        self.ended = asyncio.Event()

    def _on_close(self, transport: WSTransport, frame: WSFrame) -> None:
        code = frame.get_close_code()
        self.closed.code = code.value if isinstance(code, WSCloseCode) else int(code)
        self.ended.set()
        transport.send_close(code)
        transport.disconnect()


# Throughput


class _Throughput:
    """Shared state of one throughput run: a closed loop per connection."""

    def __init__(self, route: str, inflight: int) -> None:
        self.suffix = _frame_suffix(route)
        self.inflight = inflight
        self.next_uuid = 0
        self.sent_at: dict[int, int] = {}
        self.running = True
        self.measuring = False
        self.count = 0
        self.errors = 0
        self.samples: list[int] = []
        # set once sending stopped and every request sent has been answered
        self.drained = asyncio.Event()

    def send(self, transport: WSTransport) -> None:
        uuid = self.next_uuid = self.next_uuid + 1
        self.sent_at[uuid] = time.perf_counter_ns()
        transport.send(WSMsgType.TEXT, b'{"uuid":%d' % uuid + self.suffix)


class _ThroughputListener(_Base):
    def __init__(self, run: _Throughput) -> None:
        super().__init__()
        self.run = run

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self._on_close(transport, frame)
            return
        now = time.perf_counter_ns()
        run = self.run
        reply = orjson.loads(frame.get_payload_as_bytes())
        sent = run.sent_at.pop(reply["uuid"], None)
        if run.measuring and sent is not None:
            run.count += 1
            run.samples.append(now - sent)
            if reply["status"] != 200:
                run.errors += 1
        if run.running:
            run.send(transport)
        elif not run.sent_at:
            run.drained.set()


async def _connect(url: str, factory: Any, count: int, batch: int = 100) -> list[Any]:
    pairs: list[Any] = []
    while len(pairs) < count:
        size = min(batch, count - len(pairs))
        pairs.extend(await asyncio.gather(*(ws_connect(factory, url) for _ in range(size))))
    return pairs


async def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    run = _Throughput(spec.get("route", "echo"), spec["inflight"])
    pairs = await _connect(spec["url"], lambda: _ThroughputListener(run), spec["conns"])
    for transport, _ in pairs:
        for _ in range(run.inflight):
            run.send(transport)
    await asyncio.sleep(spec["warmup"])
    pid = spec.get("server_pid")
    run.measuring = True
    cpu0, server0, t0 = _cpu(), _proc_cpu(pid), time.perf_counter()
    await asyncio.sleep(spec["duration"])
    run.measuring = False
    cpu1, server1, t1 = _cpu(), _proc_cpu(pid), time.perf_counter()
    run.running = False
    if run.sent_at:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.drained.wait(), 2.0)
    for transport, _ in pairs:
        transport.disconnect()
    elapsed = t1 - t0
    return {
        "rate": run.count / elapsed,
        "count": run.count,
        "errors": run.errors,
        "latency_ms": _percentiles(run.samples),
        "client_cpu": (cpu1 - cpu0) / elapsed,
        "server_cpu": (server1 - server0) / elapsed,
        # server CPU time per answered message: the cost per message, which stays
        # comparable when other processes take part of the server's core
        "server_us_per_msg": (server1 - server0) / run.count * 1e6 if run.count else None,
    }


# Head-of-line blocking


class _HolListener(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.sent_at: dict[int, int] = {}
        self.slow_left = 16
        self.fast: list[int] = []
        self.done = asyncio.get_running_loop().create_future()
        self.next_uuid = 0
        self.echo = _frame_suffix("echo")

    def send(self, transport: WSTransport, suffix: bytes) -> None:
        uuid = self.next_uuid = self.next_uuid + 1
        self.sent_at[uuid] = time.perf_counter_ns()
        transport.send(WSMsgType.TEXT, b'{"uuid":%d' % uuid + suffix)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self._on_close(transport, frame)
            return
        now = time.perf_counter_ns()
        uuid = orjson.loads(frame.get_payload_as_bytes())["uuid"]
        sent = self.sent_at.pop(uuid)
        if uuid <= 16:
            self.slow_left -= 1
            if self.slow_left == 0 and not self.done.done():
                self.done.set_result(now)
        else:
            self.fast.append(now - sent)
            if self.slow_left:
                self.send(transport, self.echo)


async def head_of_line(spec: dict[str, Any]) -> dict[str, Any]:
    transport, listener = await ws_connect(_HolListener, spec["url"])
    slow = _frame_suffix("slow")
    start = time.perf_counter_ns()
    for _ in range(16):
        listener.send(transport, slow)
    listener.send(transport, listener.echo)
    end = await asyncio.wait_for(listener.done, 10.0)
    transport.disconnect()
    return {
        "total_ms": (end - start) / 1e6,
        "fast_count": len(listener.fast),
        "fast_ms": _percentiles(listener.fast),
    }


# Idle connections


class _IdleListener(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.answered = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self._on_close(transport, frame)
            return
        if not self.answered.done():
            self.answered.set_result(None)


async def idle(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pairs: list[Any] = []
    frame = b'{"uuid":1' + _frame_suffix("echo")
    for step in spec["steps"]:
        new = await _connect(spec["url"], _IdleListener, step - len(pairs), batch=200)
        for transport, _ in new:
            transport.send(WSMsgType.TEXT, frame)
        await asyncio.wait_for(asyncio.gather(*(listener.answered for _, listener in new)), 60)
        pairs.extend(new)
        print(json.dumps({"open": len(pairs)}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
    for transport, _ in pairs:
        transport.disconnect()
    return {"open": len(pairs)}


# Slow consumer


class _SlowListener(_Base):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self._on_close(transport, frame)
            return
        self.closed.frames += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.closed.code is None:
            self.closed.code = 1006
        self.ended.set()


async def slow_consumer(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transport, listener = await ws_connect(_SlowListener, spec["url"])
    transport.send(WSMsgType.TEXT, b'{"uuid":1' + _frame_suffix("push"))
    await asyncio.sleep(0.05)
    transport.underlying_transport.pause_reading()
    print(json.dumps({"paused": True}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    transport.underlying_transport.resume_reading()
    # Read what the server still has for us, for a bounded time: a connection it closed ends
    # with its close code; one it kept open keeps streaming.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listener.ended.wait(), spec.get("drain", 2.0))
    if not transport.is_disconnected:
        transport.disconnect()
    return {"close_code": listener.closed.code, "frames_after_resume": listener.closed.frames}


MODES = {"throughput": throughput, "hol": head_of_line, "idle": idle, "slow": slow_consumer}


def main() -> None:
    spec = json.loads(sys.argv[1])
    raise_file_limit()
    result = uvloop.run(MODES[spec["mode"]](spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
