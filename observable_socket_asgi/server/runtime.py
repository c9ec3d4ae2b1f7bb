"""What a connection needs of the application that serves it, handed down once.

The router builds one `Runtime` when it starts and passes it, never itself, to every layer
below: the connection shell, the request pipeline and the user's `Socket` read their limits,
the live route table, the pub/sub hub, the observer and the idempotency cache here. So the
layers below the router depend on this small frozen record instead of on the router's whole
surface, and nothing below the router can reach back up into it.

Every import here is for annotations only, so this module sits at the bottom of `server/`
and importing it costs nothing at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._route import Route
    from ..observe._observe import Observer
    from ..options import Settings
    from ..pubsub._idempotency import Idempotency
    from ..pubsub.topics import Topics
    from .socket import Socket

__all__ = ["Runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """The application's side of every connection it serves, read-only.

    `routes` is the router's live table, not a copy: a route added after start-up (an
    included router) is seen by connections already open. `make_ws` is the framework
    adapter's: it turns the `Socket` into what hooks and handlers receive as `ws` (for
    FastAPI a Starlette `WebSocket`); None hands them the `Socket` itself.
    """

    settings: Settings
    routes: Mapping[str, Route]
    topics: Topics
    observer: Observer | None
    idempotency: Idempotency | None
    identity: Callable[[Any], str | None]
    make_ws: Callable[[Socket], Any] | None = None
