"""What a router says about itself: its routes and push topics as AsyncAPI and TypeScript.

The glue between a router's parts and the pure builders: given the routes, the declared push
topics and the settings (never the router), it reads each route's declared types and hooks,
generates every JSON Schema in one pass (shared definitions), and hands plain descriptions to
`asyncapi.build_document` and `_typescript.render`. Routes without declared types never
import pydantic here either.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._route import Route
from .._schema import Mode, Schema, TopicType, json_schemas
from ..status import Status
from ._typescript import render
from .asyncapi import SCHEMA_REF, RouteDoc, TopicDoc, build_document

if TYPE_CHECKING:
    from ..options import Settings

__all__ = ["asyncapi_document", "describe", "typescript_module"]


def describe(
    routes: Iterable[Route], topics: Sequence[TopicType], settings: Settings
) -> tuple[list[RouteDoc], list[TopicDoc], dict[str, Any]]:
    """Return the descriptions of `routes` and `topics`, and their shared definitions."""
    routes = list(routes)
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
                errors=_errors(settings, route),
            )
        )
    topic_docs = [
        TopicDoc(t.pattern, by_key.get((f"topic:{t.pattern}", "serialization")), t.description)
        for t in topics
    ]
    return route_docs, topic_docs, definitions


def asyncapi_document(
    routes: Iterable[Route],
    topics: Sequence[TopicType],
    settings: Settings,
    *,
    title: str,
    version: str,
    description: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of a router's `routes` and `topics`."""
    route_docs, topic_docs, definitions = describe(routes, topics, settings)
    return build_document(
        route_docs,
        topic_docs,
        definitions,
        title=title,
        version=version,
        description=description,
        address=address,
        heartbeat=settings.heartbeat,
    )


def typescript_module(
    routes: Iterable[Route],
    topics: Sequence[TopicType],
    settings: Settings,
    *,
    title: str | None = None,
) -> str:
    """Return the TypeScript declarations of a router's `routes` and `topics`."""
    route_docs, topic_docs, definitions = describe(routes, topics, settings)
    return render(route_docs, topic_docs, definitions, title=title)


def _errors(settings: Settings, route: Route) -> tuple[int, ...]:
    """The error statuses the router itself may answer for `route`."""
    statuses: list[int] = []
    if route.payload_schema is not None or route.data_check is not None:
        statuses.append(Status.BAD_REQUEST)
    if route.access is not None:
        statuses.append(Status.FORBIDDEN)
    if settings.max_message_bytes is not None:
        statuses.append(Status.PAYLOAD_TOO_LARGE)
    if route.rate_limit is not None or settings.rate_limit is not None:
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
