"""The adapter's `SocketRouter`: the core router, with Starlette's `WebSocket` as `ws`.

Only translation lives here. The core runs the handshake checks, the receive loop, the
pipeline and the writer, on the connection's raw ASGI `receive`/`send`; Starlette's
connection state is set to match around it. The core's socket (push, subscribe, close) is put
in `ws.state.observable`, the one name the README documents.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import warnings
from collections.abc import Coroutine, Generator
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from observable_socket_asgi import Socket
from observable_socket_asgi import SocketRouter as _CoreRouter
from observable_socket_asgi.types import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["SocketRouter", "observable"]

logger = logging.getLogger("observable_socket_asgi.fastapi_adapter")

#: the key under `ws.state` (that is, `ws.scope["state"]`) holding the core's socket
STATE_KEY = "observable"

# The WebSocket being served by this task: the core asks the router's `make_ws` for the object
# handlers receive, and `_websocket_for` hands it the caller's own WebSocket, not a second one.
_serving: contextvars.ContextVar[WebSocket] = contextvars.ContextVar("fastapi_adapter_ws")

# What FastAPI reads to inject arguments (`add_api_websocket_route("/ws", router)`): one
# parameter typed WebSocket, so FastAPI calls `router(scope=<WebSocket>)`.
_ENDPOINT_SIGNATURE = inspect.Signature(
    [inspect.Parameter("scope", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=WebSocket)]
)


class _EndpointSignature:
    """The signature instances show; the class keeps its constructor's for `inspect`."""

    def __get__(self, obj: object, owner: type | None = None) -> inspect.Signature | None:
        return None if obj is None else _ENDPOINT_SIGNATURE


def observable(ws: WebSocket) -> Socket:
    """Return the core's socket behind `ws` (`ws.state.observable`, typed).

    Raises:
        LookupError: `ws` is not being served by a `SocketRouter`.
    """
    try:
        connection = ws.scope["state"][STATE_KEY]
    except (KeyError, TypeError):
        raise LookupError("this WebSocket is not served by a SocketRouter") from None
    if not isinstance(connection, Socket):
        raise LookupError(f"ws.state.{STATE_KEY} is {connection!r}, not a Socket")
    return connection


def _websocket_for(socket: Socket) -> WebSocket:
    """Hand out the WebSocket being served, with `ws.state.observable` set to the core's
    `Socket` on the same scope."""
    ws = _serving.get(None)
    if ws is None or ws.scope is not socket.scope:
        raise RuntimeError("fastapi_adapter.SocketRouter serves Starlette WebSockets only")
    ws.state.observable = socket
    return ws


class SocketRouter(_CoreRouter):
    """The core `SocketRouter` (same constructor, `route()`, hooks and limits), whose hooks,
    handlers and `access_logic` receive Starlette's `WebSocket` as `ws`.

    Call it as `await router(websocket)` inside an endpoint, or use it as an ASGI app
    (`router(scope, receive, send)`): `WebSocketRoute`, `Mount`, `add_api_websocket_route`.
    """

    __signature__ = _EndpointSignature()
    make_ws = staticmethod(_websocket_for)

    def __call__(
        self,
        scope: Scope | WebSocket,
        receive: ASGIReceiveCallable | None = None,
        send: ASGISendCallable | None = None,
    ) -> _Serving:
        """Serve one connection: `await router(websocket)` or `await router(scope, receive, send)`.

        The result must be awaited; one that is dropped unawaited logs an error and warns,
        since the connection it was given is never served.
        """
        if isinstance(scope, WebSocket):
            if receive is not None or send is not None:
                raise TypeError("call router(websocket) or router(scope, receive, send)")
            return _Serving(self._serve(scope))
        if receive is None or send is None:
            raise TypeError(
                f"call router(websocket) or router(scope, receive, send), got {type(scope)!r}"
            )
        if scope["type"] == "websocket":
            return _Serving(self._serve(WebSocket(scope, receive, send)))  # type: ignore[arg-type]
        return _Serving(_CoreRouter.__call__(self, scope, receive, send))

    # Private methods

    async def _serve(self, ws: WebSocket) -> None:
        if ws.application_state is WebSocketState.DISCONNECTED:
            logger.warning("router(ws) was given a WebSocket that is already closed")
            return
        if ws.client_state is WebSocketState.CONNECTING:
            await ws.receive()  # websocket.connect; Starlette raises on anything else
        # From here the core owns the connection and talks to the raw ASGI callables, read
        # from Starlette's private `_send`/`_receive` (it has no public accessor):
        # `ws.receive`/`ws.send` check and update its state on every frame, a measurable cost
        # per message. Its state is set to match instead: connected while the router serves
        # (so a handler may still use `ws.send_json`), closed after.
        send: Any = ws._send
        accepted = ws.application_state is WebSocketState.CONNECTED
        if accepted:
            # The endpoint already called `ws.accept()`: the core's accept must not go out.
            send = _skip_accept(send)
        ws.application_state = ws.client_state = WebSocketState.CONNECTED
        token = _serving.set(ws)
        try:
            # Served in a task of its own. At low load the receive loop suspends and wakes
            # once per frame, and each wake-up passes through every coroutine between the
            # server's task and `receive()`: here a dozen of FastAPI's and Starlette's
            # (middleware, routing, the endpoint). In a fresh task that chain is the
            # connection's own. Cancelling this coroutine cancels the task it awaits.
            # `ws._receive`: Starlette's raw receive, read for the reason given above `ws._send`
            await asyncio.get_running_loop().create_task(
                self.serve(ws.scope, ws._receive, send, accepted=accepted)  # type: ignore[arg-type]
            )
        finally:
            _serving.reset(token)
            ws.application_state = ws.client_state = WebSocketState.DISCONNECTED


def _skip_accept(send: Any) -> Any:
    async def sender(message: Any) -> None:
        if message["type"] != "websocket.accept":
            await send(message)

    return sender


class _Serving(Coroutine[Any, None, None]):
    """What `router(...)` returns: a coroutine that says so loudly if it is never awaited.

    `router(ws)` without `await` (as the original package's README wrote it) returns at once
    and the endpoint ends, so the socket closes unserved. Python's own "never awaited"
    warning is easy to miss; this logs an error naming the fix and warns.
    """

    __slots__ = ("_coro", "_started")

    def __init__(self, coro: Coroutine[Any, Any, None]) -> None:
        self._coro = coro
        self._started = False

    def __await__(self) -> Generator[Any, None, None]:
        self._started = True
        return self._coro.__await__()

    def send(self, value: None) -> Any:
        self._started = True
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._started = True
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._started = True
        self._coro.close()

    def __del__(self) -> None:
        if self._started:
            return
        self._coro.close()  # silences the inner coroutine's own, vaguer warning
        message = (
            "SocketRouter was called but never awaited, so the connection was not served: "
            "write `await router(ws)`"
        )
        logger.error(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)


# uvicorn tells ASGI 3 from ASGI 2 apps by `iscoroutinefunction(app.__call__)`; `__call__`
# returns a coroutine but is a plain function, so mark it (3.12+: inspect, 3.11: asyncio).
_mark = getattr(inspect, "markcoroutinefunction", None)
if _mark is not None:
    _mark(SocketRouter.__call__)
else:
    # Python 3.11 has no public marker: this private one is what its
    # `asyncio.iscoroutinefunction` (the test uvicorn applies there) looks for
    SocketRouter.__call__._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
