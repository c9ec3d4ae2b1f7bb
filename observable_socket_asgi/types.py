"""Types users write and the router passes around.

Dict shapes that users write by hand stay dicts (`HandlerResult`, `RouteOptions`); the
envelopes the router builds (`Request`, `Response`, `MessageData`) are slotted classes, cheap
to create once per message. Nothing here imports a web framework: `ws` is typed `Any` where
the object depends on how the router is mounted (the core `Connection`, or Starlette's
`WebSocket` through the adapter).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from asgiref.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
    WebSocketScope,
)

__all__ = [
    "ASGIReceiveCallable",
    "ASGIReceiveEvent",
    "ASGISendCallable",
    "ASGISendEvent",
    "AccessCheck",
    "DataCheck",
    "DehydrateFunction",
    "FormatCheck",
    "Handler",
    "HandlerResult",
    "Header",
    "HydrateFunction",
    "MessageData",
    "Payload",
    "Request",
    "Response",
    "RouteOptions",
    "Scope",
    "SocketAccess",
    "Uuid",
    "WebSocketScope",
]

Header = dict[str, Any]
"""A message's headers: a JSON object."""

Payload = Any
"""A message's payload: any JSON value (falsy values reach the handler as sent)."""

Uuid = str | int
"""A correlation id: the JS client sends strings, the original README's examples integers."""

_MISSING: Any = object()


@dataclass(slots=True, init=False)
class MessageData:
    """What `data_check`, `access` and `hydrate` receive as `message`.

    `headers` is always a dict (`{}` when the request had none) and `payload` is exactly what
    the client sent (`None` when absent).
    """

    headers: Header
    payload: Payload

    def __init__(self, headers: Header | None = None, payload: Payload = None) -> None:
        self.headers = {} if headers is None else headers
        self.payload = payload

    def get_data(self) -> dict[str, Any]:
        """Return `{"headers", "payload"}`, as the original package's `MessageData` did."""
        return {"headers": self.headers, "payload": self.payload}


@dataclass(slots=True, init=False)
class Request(MessageData):
    """A parsed request envelope: `{"uuid", "route", "headers", "payload"}`.

    Accepts the original package's field names as well as the wire names:
    `Request(track_id=1, path="math/sum")` equals `Request(uuid=1, route="math/sum")`, and
    `.track_id` / `.path` read the same fields.
    """

    uuid: Uuid
    route: str

    def __init__(
        self,
        uuid: Uuid = _MISSING,
        route: str = _MISSING,
        headers: Header | None = None,
        payload: Payload = None,
        *,
        track_id: Uuid = _MISSING,
        path: str = _MISSING,
    ) -> None:
        # the parser always passes the wire names: only aliases take the slow path
        if uuid is _MISSING or track_id is not _MISSING:
            uuid = _pick("uuid", uuid, "track_id", track_id)
        if route is _MISSING or path is not _MISSING:
            route = _pick("route", route, "path", path)
        self.uuid = uuid
        self.route = route
        self.headers = {} if headers is None else headers
        self.payload = payload

    @property
    def track_id(self) -> Uuid:
        """The original package's name for `uuid`."""
        return self.uuid

    @property
    def path(self) -> str:
        """The original package's name for `route`."""
        return self.route

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this request."""
        return {
            "uuid": self.uuid,
            "route": self.route,
            "headers": self.headers,
            "payload": self.payload,
        }


@dataclass(slots=True, init=False)
class Response(MessageData):
    """A response envelope: `{"uuid", "status", "headers", "payload"}`.

    Accepts `track_id` for `uuid`, like `Request`.
    """

    uuid: Uuid | None
    status: int

    def __init__(
        self,
        uuid: Uuid | None = _MISSING,
        status: int = 200,
        headers: Header | None = None,
        payload: Payload = None,
        *,
        track_id: Uuid | None = _MISSING,
    ) -> None:
        self.uuid = _pick("uuid", uuid, "track_id", track_id)
        self.status = status
        self.headers = {} if headers is None else headers
        self.payload = payload

    @property
    def track_id(self) -> Uuid | None:
        """The original package's name for `uuid`."""
        return self.uuid

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this response."""
        return {
            "uuid": self.uuid,
            "status": self.status,
            "headers": self.headers,
            "payload": self.payload,
        }


def _pick(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if value is _MISSING:
        if alias_value is _MISSING:
            raise TypeError(f"missing required argument: {name!r} (or {alias!r})")
        return alias_value
    if alias_value is not _MISSING:
        raise TypeError(f"give {name!r} or {alias!r}, not both")
    return value


class HandlerResult(TypedDict, total=False):
    """What a handler returns; every key is optional (status defaults to 200)."""

    status: int
    headers: Header | None
    payload: Payload


DataCheck = (
    Callable[[MessageData, dict[str, Any]], Awaitable[bool] | bool]
    | Callable[[MessageData], Awaitable[bool] | bool]
)
"""`data_check(message[, local]) -> bool`: early validation; False answers 400."""

FormatCheck = DataCheck
"""The original package's name for `DataCheck`."""

AccessCheck = (
    Callable[[Any, MessageData, dict[str, Any]], Awaitable[bool] | bool]
    | Callable[[Any, MessageData], Awaitable[bool] | bool]
)
"""`access(ws, message[, local]) -> bool`: authorisation; False answers 403."""

HydrateFunction = Callable[[Any, MessageData], Any]
"""`hydrate(ws, message) -> value`: its return value is the handler's single argument."""

DehydrateFunction = Callable[[Any], Any]
"""`dehydrate(payload) -> payload`: reshapes a 2xx payload before it is sent."""

Handler = Callable[..., Any]
"""`handler(value)` or `handler(ws, headers, payload)`, returning a `HandlerResult`."""

SocketAccess = Callable[[Any], Awaitable[bool] | bool]
"""`access_logic(ws) -> bool`: decides whether a connection is served (False closes it 1008)."""


class RouteOptions(TypedDict, total=False):
    """The `options` of `@router.route(name, options=...)`.

    `timeout` (seconds) overrides the router's `handler_timeout` for this route,
    `rate_limit` (`(messages, per_seconds)`) counts this route's requests in a bucket of its
    own, and `idempotent` runs the route once per uuid (and identity) within the router's
    `idempotency_ttl`, answering retries with the first answer.
    """

    data_check: DataCheck | None
    access: AccessCheck | None
    hydrate: HydrateFunction | None
    dehydrate: DehydrateFunction | None
    timeout: float | None
    rate_limit: tuple[int, float] | None
    idempotent: bool


ScopeMapping = Mapping[str, Any]
