"""Apps that the server processes of `tests/servers.py` import by name.

- `protocol_app`: a router with the routes of `tests/protocol_cases.py`.
- `big_app`: the same routes, with `max_message_bytes` above every server's default frame
  limit, so the server's own limit is the one a large frame meets.
- `hold_app`: a route that waits until cancelled and prints when it is, for shutdown tests.
- `probe_app`: a bare ASGI app (no router) that reports what the server puts in the scope
  and accepts the first subprotocol offered, so a server's own behaviour can be told apart
  from the router's.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from observable_socket_asgi import SocketRouter
from tests.protocol_cases import install_routes

protocol_app = SocketRouter()
install_routes(protocol_app)

big_app = SocketRouter(max_message_bytes=64 * 1024 * 1024)
install_routes(big_app)

hold_app = SocketRouter()


@hold_app.route("hold")
async def hold(ws: Any, headers: Any, payload: Any) -> Any:
    print("held", payload, flush=True)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        print("cancelled", payload, flush=True)
        raise
    return {"payload": "released"}  # pragma: no cover - never released


async def probe_app(scope: Any, receive: Any, send: Any) -> None:
    """Report the scope's `extensions` and `subprotocols`, and the size of each message; on a
    path ending in `/deny`, deny the handshake with 503 where the server allows it."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        return
    if (await receive())["type"] != "websocket.connect":
        return
    if scope["path"].endswith("/deny") and "websocket.http.response" in scope.get("extensions", {}):
        headers = [(b"content-type", b"text/plain"), (b"retry-after", b"1")]
        await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"busy"})
        return
    offered = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text") or message.get("bytes") or b""
        report = {
            "extensions": sorted((scope.get("extensions") or {}).keys()),
            "subprotocols": list(offered),
            "size": len(data),
            "python": "{}.{}".format(*sys.version_info[:2]),
        }
        await send({"type": "websocket.send", "text": orjson.dumps(report).decode()})
