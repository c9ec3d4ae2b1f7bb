"""The load generator: a picows client in its own process, pinned to its own core.

    python -m bench.loadgen '<json spec>'

It prints one JSON object per result line on stdout. `"proto": "socketio"` in the spec speaks
Socket.IO (Engine.IO 4 over the WebSocket) instead of the envelope. Modes:

- `throughput`: `conns` connections, each keeping `inflight` requests outstanding (a new
  one leaves as each answer arrives), for `warmup` + `duration` seconds; counts answers and
  request-to-answer latency inside the measured window only.
- `hol`: one connection; 16 `slow` requests at once, then `echo` requests one at a time
  until every slow answer is in; fast latencies and the total time.
- `idle`: opens connections up to each count in `steps` (one echo each, so the app is
  serving them), prints `{"open": n}` and waits for a line on stdin before the next step.
- `fanout`: subscribers subscribe, a publisher asks for pushes, timed until the last
  subscriber has the last push (see `fanout`); with `"stepwise": true` each timed round is
  announced (`{"ready": n}`) and closed (`{"done": frames}`), each followed by a wait for a
  line on stdin, for a profiler to count that round alone.
- `connect`: handshakes per second (see `connect_rate`).
- `slow`: sends one `push` request, stops reading, waits for a line on stdin, then reads
  again and reports what arrived and how the connection ended.
- `hold`: one of several processes that hold a share of many idle connections between them
  (see `hold`); it opens connections from its own loopback source address and sends
  heartbeats at a set rate when told to, one JSON command per stdin line.
- `counted`: as `throughput`, but by count: `warmup_count` requests, then prints
  `{"ready": true}` and waits for a line on stdin, then exactly `count` requests (each
  connection keeping `inflight` outstanding), all answered, then prints `{"done": n}` and
  waits for a line again: between the two lines the server did the work of exactly
  `count` requests (what `bench/served_instructions.py` counts).

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
PAYLOAD = b"[1,2,3,4]"


def _envelope_tail(route: str, payload: bytes = PAYLOAD) -> bytes:
    """Everything after the uuid: the JS client's frame shape (see PROTOCOL.md)."""
    return (
        b',"route":"'
        + route.encode()
        + b'","headers":{"token":"abc"},"payload":'
        + payload
        + b',"status":200}'
    )


class Codec:
    """The envelope protocol: a request is the envelope, a reply carries its uuid, a push
    has a `route`."""

    handshake = False

    def __init__(self) -> None:
        self._tails: dict[tuple[str, bytes], bytes] = {}

    def request(self, uuid: int, route: str, payload: bytes = PAYLOAD) -> bytes:
        tail = self._tails.get((route, payload))
        if tail is None:
            tail = self._tails[(route, payload)] = _envelope_tail(route, payload)
        return b'{"uuid":%d' % uuid + tail

    def parse(self, data: bytes) -> tuple[str, Any, int]:
        """-> (kind, uuid, status); kind is "reply" or "push". A push is told by its `route`
        key without decoding it: at 100k pushes/s the client's own parsing would count."""
        if b'"route":' in data and b'"route":"PONG"' not in data:  # a PONG answers a PING
            return "push", None, 200
        message = orjson.loads(data)
        return "reply", message["uuid"], message["status"]


class SocketIOCodec(Codec):
    """Socket.IO over Engine.IO 4: each route an event whose ack id is the request's uuid,
    the data the same envelope; `42["push",{...}]` is a push."""

    handshake = True

    def request(self, uuid: int, route: str, payload: bytes = PAYLOAD) -> bytes:
        tail = self._tails.get((route, payload))
        if tail is None:
            tail = self._tails[(route, payload)] = _envelope_tail(route, payload) + b"]"
        return b'42%d["%s",{"uuid":%d' % (uuid, route.encode(), uuid) + tail

    def parse(self, data: bytes) -> tuple[str, Any, int]:
        if data.startswith(b"43"):
            bracket = data.index(b"[")
            reply = orjson.loads(data[bracket:])[0]
            return "reply", int(data[2:bracket]), reply["status"]
        if data.startswith(b"42"):
            return "push", None, 200
        return "control", None, 0


def codec_for(spec: dict[str, Any]) -> Codec:
    return SocketIOCodec() if spec.get("proto") == "socketio" else Codec()


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
    """Speaks the codec: answers Socket.IO's handshake and pings, hands replies and pushes
    to `on_reply` / `on_push`; `ready` resolves once requests may be sent."""

    codec: Codec = Codec()

    def __init__(self) -> None:
        super().__init__()
        self.closed = _Closed()
        self.ended = asyncio.Event()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        if not self.codec.handshake and not self.ready.done():
            self.ready.set_result(None)

    def _on_close(self, transport: WSTransport, frame: WSFrame) -> None:
        code = frame.get_close_code()
        self.closed.code = code.value if isinstance(code, WSCloseCode) else int(code)
        self.ended.set()
        transport.send_close(code)
        transport.disconnect()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self._on_close(transport, frame)
            return
        now = time.perf_counter_ns()
        data = frame.get_payload_as_bytes()
        kind, uuid, status = self.codec.parse(data)
        if kind == "reply":
            self.on_reply(transport, uuid, status, now)
        elif kind == "push":
            self.on_push(transport, now)
        elif data[:1] == b"0":  # Engine.IO open: join the default namespace
            transport.send(WSMsgType.TEXT, b"40")
        elif data[:2] == b"40":  # namespace joined
            if not self.ready.done():
                self.ready.set_result(None)
        elif data == b"2":  # Engine.IO ping
            transport.send(WSMsgType.TEXT, b"3")

    def on_reply(self, transport: WSTransport, uuid: Any, status: int, now: int) -> None:
        pass

    def on_push(self, transport: WSTransport, now: int) -> None:
        pass


# Throughput


class _Throughput:
    """Shared state of one throughput run: a closed loop per connection."""

    def __init__(self, codec: Codec, route: str, inflight: int) -> None:
        self.codec = codec
        self.route = route
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
        transport.send(WSMsgType.TEXT, self.codec.request(uuid, self.route))


class _ThroughputListener(_Base):
    def __init__(self, run: _Throughput) -> None:
        super().__init__()
        self.run = run
        self.codec = run.codec

    def on_reply(self, transport: WSTransport, uuid: Any, status: int, now: int) -> None:
        run = self.run
        sent = run.sent_at.pop(uuid, None)
        if run.measuring and sent is not None:
            run.count += 1
            run.samples.append(now - sent)
            if status != 200:
                run.errors += 1
        if run.running:
            run.send(transport)
        elif not run.sent_at:
            run.drained.set()


async def _connect(url: str, factory: Any, count: int, batch: int = 100) -> list[Any]:
    """Open `count` connections, `batch` at a time, each ready for requests."""
    pairs: list[Any] = []
    while len(pairs) < count:
        size = min(batch, count - len(pairs))
        new = await asyncio.gather(*(ws_connect(factory, url) for _ in range(size)))
        await asyncio.wait_for(asyncio.gather(*(listener.ready for _, listener in new)), 30)
        pairs.extend(new)
    return pairs


async def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    run = _Throughput(codec_for(spec), spec.get("route", "echo"), spec["inflight"])
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


# Counted: a fixed number of requests between two handshakes with the driver


class _Counted(_Throughput):
    """A closed loop that stops sending after a set number of requests."""

    def __init__(self, codec: Codec, route: str, inflight: int) -> None:
        super().__init__(codec, route, inflight)
        self.remaining = 0

    def send(self, transport: WSTransport) -> None:
        if self.remaining <= 0:
            self.running = False
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.running = False  # answers still due drain the loop; none is sent after
        super().send(transport)


async def _counted_round(run: _Counted, pairs: list[Any], count: int) -> None:
    run.remaining, run.running = count, True
    run.drained.clear()
    for transport, _ in pairs:
        for _ in range(run.inflight):
            run.send(transport)
    await asyncio.wait_for(run.drained.wait(), 600)


async def counted(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = _Counted(codec_for(spec), spec.get("route", "echo"), spec["inflight"])
    pairs = await _connect(spec["url"], lambda: _ThroughputListener(run), spec["conns"])
    await _counted_round(run, pairs, spec["warmup_count"])
    print(json.dumps({"ready": True}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    run.measuring = True
    run.count = run.errors = 0
    await _counted_round(run, pairs, spec["count"])
    run.measuring = False
    print(json.dumps({"done": run.count}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for transport, _ in pairs:
        transport.disconnect()
    return {"count": run.count, "errors": run.errors}


# Head-of-line blocking


class _HolListener(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.sent_at: dict[int, int] = {}
        self.slow_left = 16
        self.fast: list[int] = []
        self.done = asyncio.get_running_loop().create_future()
        self.next_uuid = 0
        self.echo = "echo"

    def send(self, transport: WSTransport, route: str) -> None:
        uuid = self.next_uuid = self.next_uuid + 1
        self.sent_at[uuid] = time.perf_counter_ns()
        transport.send(WSMsgType.TEXT, self.codec.request(uuid, route))

    def on_reply(self, transport: WSTransport, uuid: Any, status: int, now: int) -> None:
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
    _HolListener.codec = codec_for(spec)
    ((transport, listener),) = await _connect(spec["url"], _HolListener, 1)
    slow = "slow"
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

    def on_reply(self, transport: WSTransport, uuid: Any, status: int, now: int) -> None:
        if not self.answered.done():
            self.answered.set_result(None)


async def idle(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pairs: list[Any] = []
    _IdleListener.codec = codec_for(spec)
    frame = _IdleListener.codec.request(1, "echo")
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


# Holding many idle connections, in one of several processes


class _HoldState:
    """What every connection of a `hold` process shares: frames answered so far."""

    def __init__(self) -> None:
        self.answers = 0
        #: set once `answers` reaches `target`
        self.target = 0
        self.reached = asyncio.Event()


class _HoldListener(_Base):
    state: _HoldState

    def __init__(self) -> None:
        super().__init__()
        self.answered = asyncio.get_running_loop().create_future()

    def _count(self) -> None:
        state = self.state
        state.answers += 1
        if state.answers >= state.target:
            state.reached.set()
        if not self.answered.done():
            self.answered.set_result(None)

    def on_reply(self, transport: WSTransport, uuid: Any, status: int, now: int) -> None:
        self._count()

    def on_push(self, transport: WSTransport, now: int) -> None:
        self._count()  # the router's PONG carries `route`, so it parses as a push

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.ended.set()  # closed by either side: a lost connection, counted as such


def heartbeat_frame(codec: Codec, uuid: int) -> bytes:
    """The JS client's heartbeat: route PING with a fresh string uuid (PROTOCOL.md); over
    Socket.IO, which has no such route, an `echo` event answered through its ack."""
    if isinstance(codec, SocketIOCodec):
        return codec.request(uuid, "echo", b"{}")
    return (
        b'{"uuid":"%08x-0000-4000-8000-000000000000","route":"PING",'
        b'"headers":{"token":"abc"},"payload":{},"status":200}' % uuid
    )


async def _open_held(spec: dict[str, Any], held: list[Any], target: int, codec: Codec) -> int:
    """Open connections until `target` are held, at most `concurrency` handshakes at once,
    each answered once (so the app really serves it); -> how many attempts failed."""
    url = spec["url"]
    options: dict[str, Any] = {"read_buffer_init_size": 1024}
    if spec.get("source"):
        options["local_addr"] = (spec["source"], 0)
    frame = codec.request(1, "echo")
    errors = 0
    opened = 0
    wanted = target - len(held)

    async def one() -> None:
        nonlocal errors, opened
        while opened < wanted:
            opened += 1
            try:
                transport, listener = await ws_connect(_HoldListener, url, **options)
                await asyncio.wait_for(listener.ready, 30)
                transport.send(WSMsgType.TEXT, frame)
                await asyncio.wait_for(listener.answered, 30)
            except Exception as exc:
                errors += 1
                opened -= 1
                if errors <= 3:
                    print(f"hold: connection failed: {exc!r}", file=sys.stderr, flush=True)
                if errors > spec.get("max_errors", 100):
                    raise
                await asyncio.sleep(0.05)
                continue
            held.append((transport, listener))

    await asyncio.gather(*(one() for _ in range(min(spec.get("concurrency", 64), wanted))))
    return errors


async def _beat(held: list[Any], codec: Codec, rate: float, seconds: float) -> int:
    """Send `rate` heartbeats per second for `seconds`, spread evenly: every 10 ms the
    ones due by then, round-robin over the held connections; -> how many were sent."""
    tick = 0.01
    start = time.perf_counter()
    sent = 0
    index = 0
    uuid = 0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        due = int(min(elapsed + tick, seconds) * rate)
        while sent < due and held:
            transport = held[index % len(held)][0]
            index += 1
            uuid += 1
            transport.send(WSMsgType.TEXT, heartbeat_frame(codec, uuid))
            sent += 1
        await asyncio.sleep(start + (elapsed // tick + 1) * tick - time.perf_counter())
    return sent


async def hold(spec: dict[str, Any]) -> dict[str, Any]:
    """Commands, one JSON object per stdin line, each answered by one line on stdout:

    - `{"open": n}`: open connections until `n` are held -> `{"open", "seconds", "errors"}`;
    - `{"beat": rate, "seconds": s}`: heartbeats at `rate`/s for `s` seconds, then wait (at
      most 10 s) for every answer -> `{"sent", "answered", "seconds", "lost"}`, `lost` the
      connections closed since they were opened;
    - `{"quit": true}` (or end of input): close everything and end.
    """
    loop = asyncio.get_running_loop()
    codec = codec_for(spec)
    state = _HoldState()
    _HoldListener.codec, _HoldListener.state = codec, state
    held: list[Any] = []
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = json.loads(line) if line.strip() else {"quit": True}
        if "open" in command:
            t0 = time.perf_counter()
            errors = await _open_held(spec, held, int(command["open"]), codec)
            reply = {"open": len(held), "seconds": time.perf_counter() - t0, "errors": errors}
        elif "beat" in command:
            before = state.answers
            state.target = 1 << 62  # not before every heartbeat is sent
            state.reached.clear()
            t0 = time.perf_counter()
            sent = await _beat(held, codec, float(command["beat"]), float(command["seconds"]))
            seconds = time.perf_counter() - t0
            state.target = before + sent
            if state.answers < state.target:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.reached.wait(), 10)
            reply = {
                "sent": sent,
                "answered": state.answers - before,
                "seconds": seconds,
                # connections closed since they were opened (e.g. a late pong to uvicorn)
                "lost": sum(listener.ended.is_set() for _, listener in held),
            }
        else:
            break
        print(json.dumps(reply), flush=True)
    for transport, _ in held:
        transport.disconnect()
    return {"closed": len(held)}


# Slow consumer


class _SlowListener(_Base):
    def on_reply(self, transport: WSTransport, uuid: Any, status: int, now: int) -> None:
        self.closed.frames += 1

    def on_push(self, transport: WSTransport, now: int) -> None:
        self.closed.frames += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.closed.code is None:
            self.closed.code = 1006
        self.ended.set()


async def slow_consumer(spec: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transport, listener = await ws_connect(_SlowListener, spec["url"])
    transport.send(WSMsgType.TEXT, Codec().request(1, "push"))
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


# Fan-out


class _FanRun:
    """One fan-out round: every subscriber waits for `pushes` pushes."""

    def __init__(self) -> None:
        self.left = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class _Subscriber(_Base):
    run: _FanRun

    def __init__(self) -> None:
        super().__init__()
        self.pending = 0
        self.answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_reply(self, transport: WSTransport, uuid: Any, status: int, now: int) -> None:
        if status != 200:
            raise RuntimeError(f"subscribe answered {status}")
        if not self.answered.done():
            self.answered.set_result(None)

    def on_push(self, transport: WSTransport, now: int) -> None:
        self.pending -= 1
        if self.pending == 0:
            run = self.run
            run.left -= 1
            if run.left == 0 and not run.done.done():
                run.done.set_result(now)


class _Publisher(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.answers: asyncio.Queue[int] = asyncio.Queue()

    def on_reply(self, transport: WSTransport, uuid: Any, status: int, now: int) -> None:
        self.answers.put_nowait(status)


async def fanout(spec: dict[str, Any]) -> dict[str, Any]:
    """`subscribers` connections on `url` subscribe; a publisher connection on
    `publish_url` (another worker, for a backplane) asks for `pushes` pushes, `rounds`
    times after one warm-up round (of `warmup_pushes`, default `pushes`); each round is
    timed from the request until the last subscriber has its last push, and the
    subscribers' server CPU is read around it."""
    codec = codec_for(spec)
    _Subscriber.codec = _Publisher.codec = codec
    n, pushes = spec["subscribers"], spec["pushes"]
    subs = await _connect(spec["url"], _Subscriber, n, batch=200)
    for i, (transport, _) in enumerate(subs):
        transport.send(WSMsgType.TEXT, codec.request(i + 1, "subscribe"))
    await asyncio.wait_for(asyncio.gather(*(listener.answered for _, listener in subs)), 60)
    ((pub, publisher),) = await _connect(spec.get("publish_url") or spec["url"], _Publisher, 1)
    pid, pub_pid = spec.get("server_pid"), spec.get("publisher_pid")
    times: list[float] = []
    cpus: list[float] = []
    pub_cpus: list[float] = []
    client_cpus: list[float] = []
    for round_ in range(spec["rounds"] + 1):
        count = spec.get("warmup_pushes", pushes) if round_ == 0 else pushes
        run = _FanRun()
        run.left = n
        _Subscriber.run = run
        for _, listener in subs:
            listener.pending = count
        payload = b'{"count":%d}' % count
        if round_ and spec.get("stepwise"):  # a profiler zeroes its counters now
            print(json.dumps({"ready": round_}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cpu0, pcpu0, ccpu0 = _proc_cpu(pid), _proc_cpu(pub_pid), _cpu()
        t0 = time.perf_counter_ns()
        pub.send(WSMsgType.TEXT, codec.request(round_ + 1, "fanout", payload))
        end = await asyncio.wait_for(run.done, spec.get("timeout", 120))
        status = await asyncio.wait_for(publisher.answers.get(), 30)
        cpu1, pcpu1, ccpu1 = _proc_cpu(pid), _proc_cpu(pub_pid), _cpu()
        if status != 200:
            raise RuntimeError(f"fanout answered {status}")
        if round_ and spec.get("stepwise"):  # ... and reads them now
            print(json.dumps({"done": n * count}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if round_ == 0:
            continue  # warm-up
        times.append((end - t0) / 1e9)
        cpus.append(cpu1 - cpu0)
        pub_cpus.append(pcpu1 - pcpu0)
        client_cpus.append((ccpu1 - ccpu0) / ((end - t0) / 1e9))
    pub.disconnect()
    for transport, _ in subs:
        transport.disconnect()
    frames = n * pushes
    best = sorted(times)[len(times) // 2]
    return {
        "seconds": times,
        "median_s": best,
        "pushes_per_s": frames / best,
        "server_cpu_s": cpus,
        "publisher_cpu_s": pub_cpus,
        # the load generator's CPU as a fraction of one core while the round ran
        "client_cpu": sorted(client_cpus)[len(client_cpus) // 2],
        # the subscribers' server's CPU as a fraction of one core while the round ran
        "server_cpu": sorted(cpus)[len(cpus) // 2] / best,
        # server CPU per delivered frame; ticks are 10 ms, so only meaningful for big rounds
        "server_us_per_frame": sorted(cpus)[len(cpus) // 2] / frames * 1e6,
    }


# Connection set-up


class _Handshake(_Base):
    pass


async def connect_rate(spec: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` loops each open a connection, wait until it is ready (for Socket.IO:
    its namespace joined), close it, and start over; counts completed handshakes in the
    measured window."""
    _Handshake.codec = codec_for(spec)
    url = spec["url"]
    state = {"measuring": False, "running": True, "count": 0, "errors": 0}

    async def one_loop() -> None:
        while state["running"]:
            try:
                transport, listener = await ws_connect(_Handshake, url)
                await asyncio.wait_for(listener.ready, 10)
            except Exception:
                if state["measuring"]:
                    state["errors"] += 1
                continue
            if state["measuring"]:
                state["count"] += 1
            transport.disconnect()

    loops = [asyncio.ensure_future(one_loop()) for _ in range(spec["concurrency"])]
    await asyncio.sleep(spec["warmup"])
    pid = spec.get("server_pid")
    state["measuring"] = True
    cpu0, server0, t0 = _cpu(), _proc_cpu(pid), time.perf_counter()
    await asyncio.sleep(spec["duration"])
    state["measuring"] = False
    cpu1, server1, t1 = _cpu(), _proc_cpu(pid), time.perf_counter()
    state["running"] = False
    await asyncio.wait(loops, timeout=10)
    elapsed = t1 - t0
    count = int(state["count"])
    return {
        "rate": count / elapsed,
        "count": count,
        "errors": state["errors"],
        "client_cpu": (cpu1 - cpu0) / elapsed,
        "server_cpu": (server1 - server0) / elapsed,
        "server_us_per_handshake": (server1 - server0) / count * 1e6 if count else None,
    }


MODES = {
    "throughput": throughput,
    "hol": head_of_line,
    "idle": idle,
    "slow": slow_consumer,
    "fanout": fanout,
    "connect": connect_rate,
    "counted": counted,
    "hold": hold,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    raise_file_limit()
    result = uvloop.run(MODES[spec["mode"]](spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
