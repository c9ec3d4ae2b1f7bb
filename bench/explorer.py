"""The explorer page: its weight, its time to interactive in Chromium, and what it costs a request.

    python -m bench.explorer [--loads 15] [--requests N1 N2]
    python -m bench.explorer --run off|on N      # the child valgrind runs

- weight: the bytes of the page and its files as served (the page as rendered for a router,
  the script, the style sheet, the icon), uncompressed and gzipped (level 6, what a proxy
  would use; the router itself does not compress).
- time to interactive: a real headless Chromium (Debian's `chromium`, through Playwright)
  loads the page from uvicorn on 127.0.0.1; interactive is the page's own
  `explorer-interactive` mark (routes listed, socket open), read with `performance.now()`
  from the navigation's start, with `domInteractive` beside it. Cold: a fresh browser context
  per load (empty cache); warm: reloads in one context (the files from cache, the page and
  api.json revalidated). Medians of `--loads`.
- per-request cost: instructions per echo request (bench/instructions.py's driver, in
  process on one connection, counted under callgrind: a figure the shared machine's load
  cannot move) for a router with `explorer_url` off and one with it on. The explorer touches
  only the plain-HTTP path, so the two should match.

Results: bench/results/explorer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._harness import ROOT, save

CHROMIUM = os.environ.get("OBSERVABLE_SOCKET_CHROMIUM", "/usr/bin/chromium")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.explorer", description=__doc__.split("\n")[0])
    p.add_argument("--loads", type=int, default=15)
    p.add_argument("--requests", type=int, nargs=2, default=[2000, 12000], metavar=("N1", "N2"))
    p.add_argument("--run", nargs=2, metavar=("MODE", "N"), help="the child valgrind runs")
    return p


def demo_router(explorer: bool = True) -> Any:
    """A router like the docs' example: typed routes, a guarded one, a topic, metrics."""
    from pydantic import BaseModel

    from observable_socket_asgi import SocketRouter

    class SumIn(BaseModel):
        numbers: list[int]

    router = SocketRouter(explorer_url="/explorer" if explorer else None)

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": payload}

    @router.route("math/sum", {"payload": SumIn})
    async def total(ws: Any, headers: Any, payload: SumIn) -> Any:
        """Add numbers."""
        return {"payload": {"sum": sum(payload.numbers)}}

    @router.route("rooms/join", {"access": lambda ws, message: True})
    async def join(ws: Any, headers: Any, payload: Any) -> Any:
        """Join a room."""
        return {"status": 202}

    router.push_topic("room:{room}", description="what a room member receives")
    return router


async def _get(app: Any, path: str) -> bytes:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    await app(scope, receive, send)
    assert sent[0]["status"] == 200, (path, sent[0]["status"])
    return bytes(sent[1]["body"])


def weight() -> dict[str, Any]:
    """Bytes of each file as served, raw and gzipped, and the totals."""
    router = demo_router()
    files = {}
    for name in ("", "/explorer.js", "/explorer.css", "/favicon.svg"):
        body = asyncio.run(_get(router, "/explorer" + name))
        files[name.lstrip("/") or "page (html)"] = {
            "bytes": len(body),
            "gzip": len(gzip.compress(body, compresslevel=6, mtime=0)),
        }
    total = {key: sum(f[key] for f in files.values()) for key in ("bytes", "gzip")}
    return {"files": files, "total": total}


class _Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def __enter__(self) -> _Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


_TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const mark = performance.getEntriesByName("explorer-interactive")[0];
  return {interactive: mark.startTime, dom_interactive: nav.domInteractive};
}"""


def time_to_interactive(loads: int) -> dict[str, Any]:
    """Milliseconds from navigation start to interactive, cold and warm, in Chromium."""
    from playwright.sync_api import sync_playwright

    router = demo_router()
    cold: list[dict[str, float]] = []
    warm: list[dict[str, float]] = []
    with _Server(router) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        url = f"http://127.0.0.1:{server.port}/explorer"
        version = browser.version
        for _ in range(loads):
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("body[data-interactive=true]")
            cold.append(page.evaluate(_TIMING))
            context.close()
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-interactive=true]")
        for _ in range(loads):
            page.reload()
            page.wait_for_selector("body[data-interactive=true]")
            warm.append(page.evaluate(_TIMING))
        context.close()
        browser.close()

    def medians(runs: list[dict[str, float]]) -> dict[str, float]:
        return {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}

    return {"chromium": version, "loads": loads, "cold_ms": medians(cold), "warm_ms": medians(warm)}


def child(mode: str, n: int) -> None:
    """What runs under valgrind: `n` echo requests to a router with the explorer off or on."""
    import uvloop

    from bench.instructions import _echo

    done = uvloop.run(_echo(demo_router(explorer=mode == "on"), n))
    print(json.dumps({"units": done}))


def _callgrind(mode: str, n: int) -> tuple[int, int]:
    """(instructions, requests) of one child run under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
        argv += ["-m", "bench.explorer", "--run", mode, str(n)]
        proc = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=1800,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"echo with the explorer {mode} failed: {proc.stderr[-2000:]}")
        text = Path(out).read_text()
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if match is None:
        raise RuntimeError("no instruction total in the callgrind output")
    return int(match.group(1)), int(json.loads(proc.stdout.strip().splitlines()[-1])["units"])


def request_cost(n1: int, n2: int) -> dict[str, Any]:
    """Instructions per echo request with explorer_url off and on, counted by callgrind as
    bench/instructions.py counts them: (Ir(n2) - Ir(n1)) / (n2 - n1), start-up cancelled."""
    per: dict[str, float] = {}
    for mode in ("off", "on"):
        ir1, u1 = _callgrind(mode, n1)
        ir2, u2 = _callgrind(mode, n2)
        per[mode] = (ir2 - ir1) / (u2 - u1)
    return {
        "requests": [n1, n2],
        "instructions_per_request_off": round(per["off"]),
        "instructions_per_request_on": round(per["on"]),
        "on_over_off": round(per["on"] / per["off"], 4),
    }


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.run:
        child(args.run[0], int(args.run[1]))
        return
    result = {
        "weight": weight(),
        "time_to_interactive": time_to_interactive(args.loads),
        "request_cost": request_cost(*args.requests),
    }
    w = result["weight"]
    for name, f in w["files"].items():
        print(f"{name:<14} {f['bytes']:>7} B  {f['gzip']:>6} B gzipped")
    print(f"{'total':<14} {w['total']['bytes']:>7} B  {w['total']['gzip']:>6} B gzipped")
    tti = result["time_to_interactive"]
    print(f"Chromium {tti['chromium']}, median of {tti['loads']} loads:")
    for kind in ("cold_ms", "warm_ms"):
        t = tti[kind]
        print(
            f"  {kind[:4]}: interactive {t['interactive']} ms,"
            f" domInteractive {t['dom_interactive']} ms"
        )
    cost = result["request_cost"]
    print(
        f"echo request: {cost['instructions_per_request_off']} instructions with explorer_url"
        f" off, {cost['instructions_per_request_on']} on (on/off {cost['on_over_off']})"
    )
    print("saved", save("explorer", result))


if __name__ == "__main__":
    main()
