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

Inside hooks and handlers, the core's socket (push, subscribe, close) is
`ws.state.observable`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from observable_socket_asgi._extras import require

with require("fastapi", "fastapi_adapter (FastAPI and Starlette apps)"):
    import starlette.websockets  # noqa: F401

import observable_socket_asgi as _core

from ._router import SocketRouter, observable

if TYPE_CHECKING:  # the same names, for type checkers; `__getattr__` serves them at run time
    from observable_socket_asgi import *  # type: ignore[assignment]  # noqa: F403

__all__ = ["SocketRouter", "observable"]
# Every other public name of the core, as the same objects: read from the core's `__all__`,
# never copied, so a name the core adds is here too.
__all__ += [name for name in _core.__all__ if name not in ("SocketRouter", "__version__")]


def __getattr__(name: str) -> Any:
    """The core's public names, looked up when first read (PEP 562)."""
    if name in __all__:
        return getattr(_core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
