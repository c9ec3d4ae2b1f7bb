"""Serve one contender on uvicorn with the settings every scenario uses.

    python -m bench.server <contender> <port>
    BENCH_SERVER=granian python -m bench.server <contender> <port>   # Granian instead

uvicorn options, the same for every contender: loop=uvloop, http=httptools,
ws=websockets-sansio ($BENCH_WS to change it), no per-message deflate, lifespan off, access
log off. The file limit is raised to the hard limit (or to $BENCH_NOFILE, as root) so the
idle scenarios can hold 5,000 to 100,000 sockets.

With $BENCH_SERVER=granian the process becomes Granian (one worker process, one runtime
thread, uvloop, ASGI), serving the same contender through `factory`: a server written in
Rust under the same app, to tell what a frame costs the app from what it costs the server.
"""

from __future__ import annotations

import logging
import os
import resource
import sys

import uvicorn

from bench.apps import ASGIApp, build

UVICORN_OPTIONS: dict[str, object] = {
    "loop": "uvloop",
    "http": "httptools",
    "ws": "websockets-sansio",
    "ws_per_message_deflate": False,
    "lifespan": "off",
    "access_log": False,
    "log_level": "warning",
    "backlog": 4096,
}


def raise_file_limit(want: int | None = None) -> int:
    """Raise RLIMIT_NOFILE to its hard limit, or to `want` (default $BENCH_NOFILE) when that
    is higher and the process may raise the hard limit too (root); return the new soft limit.

    Only the benchmark's own processes do this: 100,000 sockets need more descriptors than
    the usual 1,024 or 20,000, and the library must not change limits behind its user's back.
    """
    if want is None and os.environ.get("BENCH_NOFILE"):
        want = int(os.environ["BENCH_NOFILE"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want is not None and want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError):
            pass  # not allowed: keep what the hard limit gives
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


GRANIAN_OPTIONS = [
    "--interface", "asgi", "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
    "--log-level", "warning", "--backlog", "4096", "--factory",
]  # fmt: skip


def factory() -> ASGIApp:
    """The contender $BENCH_APP names: the target Granian's worker imports and calls."""
    return build(os.environ["BENCH_APP"])


def _exec_granian(name: str, port: int) -> None:
    """Replace this process with Granian serving `name`: its worker is this process's child,
    with the file limit raised here (both are inherited)."""
    os.environ["BENCH_APP"] = name
    argv = [sys.executable, "-m", "granian", *GRANIAN_OPTIONS, "--host", "127.0.0.1"]
    argv += ["--port", str(port), "bench.server:factory"]
    os.execv(sys.executable, argv)


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    raise_file_limit()
    if os.environ.get("BENCH_SERVER") == "granian":
        _exec_granian(name, port)
    # The original package logs every client disconnect as an error (`(1005, None)`);
    # silence it so the bench output stays readable. It costs it nothing measurable.
    logging.getLogger("fastapi_observable_socket").setLevel(logging.CRITICAL)
    app = build(name)
    options = dict(UVICORN_OPTIONS)
    # $BENCH_WS_PING_INTERVAL: seconds between uvicorn's own WebSocket pings (default 20),
    # "off" for none; the idle-connections scenario shows what they cost at scale
    interval = os.environ.get("BENCH_WS_PING_INTERVAL")
    if interval:
        options["ws_ping_interval"] = None if interval == "off" else float(interval)
    # $BENCH_WS: uvicorn's WebSocket implementation (websockets-sansio unless set), to compare
    # what a frame costs in each
    options["ws"] = os.environ.get("BENCH_WS", options["ws"])
    uvicorn.run(app, host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
