"""What a router says about itself: its routes and push topics as AsyncAPI and TypeScript.

The glue between a router and the pure builders: it reads each route's declared types and
hooks, generates every JSON Schema in one pass (shared definitions), and hands plain
descriptions to `asyncapi.build_document` and `_typescript.render`. A router without typed
routes never imports pydantic here either.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol

from .._schema import Mode, Schema, TopicType, json_schemas
from ..status import Status
from ._typescript import render
from .asyncapi import SCHEMA_REF, RouteDoc, TopicDoc, build_document

__all__ = ["asyncapi_document", "describe", "typescript_module"]


class _RouteLike(Protocol):
    name: str
    handler: Any
    data_check: Any
    access: Any
    timeout: float | None
    rate_limit: tuple[int, float] | None
    payload_schema: Schema | None
    response_schema: Schema | None


class _RouterLike(Protocol):
    @property
    def heartbeat(self) -> bool: ...

    @property
    def max_message_bytes(self) -> int | None: ...

    @property
    def rate_limit(self) -> tuple[int, float] | None: ...

    @property
    def routes(self) -> dict[str, Any]: ...

    @property
    def push_topics(self) -> Sequence[TopicType]: ...


def describe(
    router: _RouterLike,
) -> tuple[list[RouteDoc], list[TopicDoc], dict[str, Any]]:
    """Return the descriptions of `router`'s routes and topics, and their shared definitions."""
    routes: list[_RouteLike] = list(router.routes.values())
    topics = list(router.push_topics)
    items: list[tuple[str, Mode, Schema]] = []
    for route in routes:
        if route.payload_schema is not None:
            items.append((f"route:{route.name}", "validation", route.payload_schema))
        if route.response_schema is not None:
            items.append((f"route:{route.name}", "serialization", route.response_schema))
    for topic in topics:
        if topic.schema is not None:
            items.append((f"topic:{topic.pattern}", "serialization", topic.schema))
    by_key, definitions = json_schemas(items, SCHEMA_REF)

    route_docs = []
    for route in routes:
        key = f"route:{route.name}"
        summary, description = _docstring(route.handler)
        route_docs.append(
            RouteDoc(
                route.name,
                summary=summary,
                description=description,
                request=by_key.get((key, "validation")),
                response=by_key.get((key, "serialization")),
                errors=_errors(router, route),
            )
        )
    topic_docs = [
        TopicDoc(t.pattern, by_key.get((f"topic:{t.pattern}", "serialization")), t.description)
        for t in topics
    ]
    return route_docs, topic_docs, definitions


def asyncapi_document(
    router: _RouterLike,
    *,
    title: str,
    version: str,
    description: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Return `router`'s AsyncAPI 3.0 document."""
    routes, topics, definitions = describe(router)
    return build_document(
        routes,
        topics,
        definitions,
        title=title,
        version=version,
        description=description,
        address=address,
        heartbeat=router.heartbeat,
    )


def typescript_module(router: _RouterLike, *, title: str | None = None) -> str:
    """Return `router`'s TypeScript declarations."""
    routes, topics, definitions = describe(router)
    return render(routes, topics, definitions, title=title)


def _errors(router: _RouterLike, route: _RouteLike) -> tuple[int, ...]:
    """The error statuses the router itself may answer for `route`."""
    statuses: list[int] = []
    if route.payload_schema is not None or route.data_check is not None:
        statuses.append(Status.BAD_REQUEST)
    if route.access is not None:
        statuses.append(Status.FORBIDDEN)
    if router.max_message_bytes is not None:
        statuses.append(Status.PAYLOAD_TOO_LARGE)
    if route.rate_limit is not None or router.rate_limit is not None:
        statuses.append(Status.TOO_MANY_REQUESTS)
    statuses.append(Status.INTERNAL_SERVER_ERROR)
    if route.timeout is not None:
        statuses.append(Status.GATEWAY_TIMEOUT)
    return tuple(statuses)


def _docstring(fn: Any) -> tuple[str | None, str | None]:
    """The first paragraph of `fn`'s docstring as a summary, the rest as a description."""
    doc = inspect.getdoc(fn)
    if not doc:
        return None, None
    summary, _, rest = doc.partition("\n\n")
    return " ".join(summary.split()), rest.strip() or None
