"""What a router hands down to everything that serves a connection: one frozen object.

The router builds a `Runtime` once, from its keywords, and passes it (never itself) to the
handshake, the connection and the pipeline. Nothing below the router reads the router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..pubsub._idempotency import connection_identity, fingerprint, storage_key

if TYPE_CHECKING:
    from .._route import Route
    from ..envelope import Request
    from ..observe._observe import Observer
    from ..options import Settings
    from ..pubsub._idempotency import Idempotency
    from ..pubsub.topics import Backplane as Topics

__all__ = ["Runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """The router's settings and services, as the serving layers read them.

    Attributes:
        settings: the per-connection limits and the handshake's rules.
        routes: the live route table by name (not a copy: routes added later are served).
        topics: the topics hub: subscriptions, fan-out, history, presence.
        observer: what connections, the handshake and the topics report to; None: nothing.
        idempotency: runs idempotent routes once per key.
        identity: `fn(ws) -> str | None`, whose answers an idempotent retry may receive.
        make_ws: what hooks and handlers receive as `ws`, from the core's socket; None:
            the socket itself (an adapter hands out its framework's object).
    """

    settings: Settings
    routes: Mapping[str, Route]
    topics: Topics
    observer: Observer | None
    idempotency: Idempotency | None
    identity: Callable[[Any], str | None]
    make_ws: Callable[[Any], Any] | None = None

    # The connection of this branch still reads the router's names; these three keep it
    # running until the core's runtime replaces this file.

    @property
    def route_table(self) -> Mapping[str, Route]:
        return self.routes

    @property
    def backplane(self) -> Topics:
        return self.topics

    async def answer_once(
        self, route: Route, ws: Any, request: Request, compute: Callable[[], Awaitable[str]]
    ) -> str:
        try:
            identity = self.identity(ws)
        except Exception:
            import logging

            logging.getLogger("observable_socket_asgi.routing").exception(
                "idempotency_identity raised: keyed to the connection"
            )
            identity = None
        if identity is None:
            identity = connection_identity(ws)
        key = storage_key(str(identity), route.name, request.uuid)
        await self.topics.start()
        assert self.idempotency is not None
        return await self.idempotency.run(key, fingerprint(request.payload), request.uuid, compute)
