"""Serve one contender on uvicorn with the settings every scenario uses.

    python -m bench.server <contender> <port>

uvicorn options, the same for every contender: loop=uvloop, http=httptools,
ws=websockets-sansio, no per-message deflate, lifespan off, access log off. The file limit
is raised to the hard limit (or to $BENCH_NOFILE, as root) so the idle scenarios can hold
5,000 to 100,000 sockets.
"""

from __future__ import annotations

import logging
import os
import resource
import sys

import uvicorn

from bench.apps import build

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


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    raise_file_limit()
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
    uvicorn.run(app, host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
