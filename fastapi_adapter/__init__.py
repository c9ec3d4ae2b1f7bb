"""fastapi_adapter: the ObservableSocket `SocketRouter` on FastAPI and Starlette.

The router, its routes and its hooks are the core's (`observable_socket_asgi`); this package
only changes what handlers receive as `ws` (Starlette's `WebSocket` on the same scope) and lets
the router be plugged in every way FastAPI and Starlette allow:

    @app.websocket("/ws")                          # inside an endpoint (FastAPI Depends works)
    async def endpoint(ws: WebSocket):
        await router(ws)

    app.add_api_websocket_route("/ws2", router)    # FastAPI's registration
    app.router.add_websocket_route("/ws3", router) # Starlette's registration
    app.mount("/ws4", router)                      # a mounted ASGI app
    Starlette(routes=[WebSocketRoute("/ws", router)])

Inside hooks and handlers, the core connection (push, close) is `ws.state.observable`.
"""

from __future__ import annotations

try:
    import starlette.websockets  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    from observable_socket_asgi._extras import install_command

    raise ImportError(
        "fastapi_adapter needs Starlette (and FastAPI for FastAPI apps); install the extra: "
        + install_command("fastapi")
    ) from exc

from observable_socket_asgi import (
    AccessCheck,
    CloseCode,
    Connection,
    ConnectionClosed,
    DataCheck,
    DehydrateFunction,
    FormatCheck,
    Handler,
    HandlerResult,
    Header,
    HydrateFunction,
    MessageData,
    ObservableSocketError,
    Payload,
    ProtocolError,
    Request,
    Response,
    Route,
    RouteOptions,
    SocketAccess,
    Status,
    is_success,
)

from ._router import SocketRouter, observable

__all__ = [
    "AccessCheck",
    "CloseCode",
    "Connection",
    "ConnectionClosed",
    "DataCheck",
    "DehydrateFunction",
    "FormatCheck",
    "Handler",
    "HandlerResult",
    "Header",
    "HydrateFunction",
    "MessageData",
    "ObservableSocketError",
    "Payload",
    "ProtocolError",
    "Request",
    "Response",
    "Route",
    "RouteOptions",
    "SocketAccess",
    "SocketRouter",
    "Status",
    "is_success",
    "observable",
]
