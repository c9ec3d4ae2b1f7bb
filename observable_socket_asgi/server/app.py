"""The ASGI application behind a router: scope dispatch and the lifespan.

`SocketRouter.__call__` hands every scope to its `Application`: a `websocket` scope to the
handshake, `http` to the plain answers, `lifespan` to the start and stop of the runtime's
services around the user's hooks.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .handshake import Handshake, serve_connection
from .http import Answer, Owns, answer_http

if TYPE_CHECKING:
    from ..types import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["Application"]

logger = logging.getLogger("observable_socket_asgi.asgi")


@dataclass(frozen=True, slots=True)
class Application:
    """A complete ASGI 3 application: websocket, lifespan and (mostly refused) http scopes."""

    #: what every WebSocket handshake reads
    handshake: Handshake
    #: the plain-HTTP pages and their answers
    http: Sequence[tuple[Owns, Answer]]
    #: run by the lifespan's startup, then shutdown, in order (live: hooks added later run)
    startup_hooks: Sequence[Callable[[], Any]]
    shutdown_hooks: Sequence[Callable[[], Any]]

    def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> Awaitable[None]:
        """Serve one ASGI scope: return the coroutine that serves it, for the caller to await.

        Not a coroutine itself: one awaiting the connection's would stay alive, frame and all,
        as long as the connection does.
        """
        kind = scope["type"]
        if kind == "websocket":
            return serve_connection(self.handshake, scope, receive, send, connect=True)
        if kind == "lifespan":
            return self._lifespan(receive, send)
        if kind == "http":
            return answer_http(self.http, scope, send)
        raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def startup(self) -> None:
        """Start the runtime's services, then run the startup hooks: what the ASGI lifespan's
        startup does, for a framework that owns the lifespan itself."""
        await self.handshake.runtime.topics.start()
        await _run_hooks(self.startup_hooks)

    async def shutdown(self) -> None:
        """Run the shutdown hooks, then stop what `startup()` started, in reverse: the
        idempotency store, the topics (the backplane), the observer."""
        runtime = self.handshake.runtime
        await _run_hooks(self.shutdown_hooks)
        if runtime.idempotency is not None:
            await runtime.idempotency.close()
        await runtime.topics.stop()
        if runtime.observer is not None:
            runtime.observer.shutdown()

    # Private methods

    async def _lifespan(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("startup hook failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    logger.exception("shutdown hook failed")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _run_hooks(hooks: Sequence[Callable[[], Any]]) -> None:
    for fn in hooks:
        result = fn()
        if inspect.isawaitable(result):  # also `lambda: engine.connect()`
            await result
