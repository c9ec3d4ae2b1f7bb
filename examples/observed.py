"""A router that exports Prometheus metrics and OpenTelemetry spans, in one process or many.

One process:

    uvicorn examples.observed:app

Several workers, the metrics of all of them at `/metrics` whichever worker answers (the
directory must exist, be empty at start, and be shared by the workers):

    PROMETHEUS_MULTIPROC_DIR=/tmp/observable-metrics uvicorn examples.observed:app --workers 2

Then watch it: `observable-socket top http://127.0.0.1:8000/metrics`.
"""

from __future__ import annotations

import os
from typing import Any

from observable_socket_asgi import HandlerResult, SocketRouter

app = SocketRouter(metrics_url="/metrics", tracing=True)


@app.route("math/sum")
async def total(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Add up a list of numbers."""
    return {"payload": {"sum": sum(payload)}}


@app.route("whoami")
async def whoami(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Say which worker process served this connection."""
    return {"payload": {"pid": os.getpid()}}
