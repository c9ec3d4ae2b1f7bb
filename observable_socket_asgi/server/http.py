"""The plain-HTTP answers beside the socket: which requests a page owns, and its answer.

A plain HTTP request to the router gets `426 Upgrade Required`, unless its path is one the
router was given (`metrics_url`, `asyncapi_url`, `explorer_url`): `answers()` lists those,
each as `(owns, answer)`, and `answer_http` asks them in order. Every answer is a `Response`
(`_responses.py`), so one more plain page is one more entry in `answers()`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._responses import Response, method_not_allowed, text

if TYPE_CHECKING:
    from ..describe.explorer import Explorer
    from ..observe.metrics import PrometheusMetrics
    from ..options import HttpPaths
    from ..types import ASGISendCallable, Scope

__all__ = ["UPGRADE_REQUIRED", "Answer", "Owns", "answer_http", "answers", "document_answer"]

logger = logging.getLogger("observable_socket_asgi.asgi")

Answer = Callable[["Scope", "ASGISendCallable"], Awaitable[None]]
"""Answers one plain HTTP request on its path: `await answer(scope, send)`."""

Owns = Callable[["Scope"], bool]
"""Whether a plain HTTP request is for a page: `owns(scope)`."""

#: what every other path gets: this endpoint speaks WebSocket only
UPGRADE_REQUIRED = text(
    426,
    "Upgrade Required: this endpoint speaks WebSocket only.",
    [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")],
)


def answers(
    paths: HttpPaths,
    metrics: PrometheusMetrics | None,
    document: Callable[[], dict[str, Any]],
    explorer: Explorer | None = None,
) -> tuple[tuple[Owns, Answer], ...]:
    """The pages served beside the socket, each with its answer, from the router's options.

    Args:
        document: builds the AsyncAPI document, when it is asked for.
        explorer: the explorer page, which owns its path and the files below it.
    """
    served: list[tuple[Owns, Answer]] = []
    if paths.metrics_url is not None and metrics is not None:
        served.append((functools.partial(_is_path, paths.metrics_url), metrics.scrape))
    if paths.asyncapi_url is not None:
        owns = functools.partial(_is_path, paths.asyncapi_url)
        served.append((owns, document_answer(document)))
    if explorer is not None:
        served.append((explorer.owns, explorer.serve))
    return tuple(served)


async def answer_http(
    served: Sequence[tuple[Owns, Answer]], scope: Scope, send: ASGISendCallable
) -> None:
    """Answer a plain HTTP request: the answer of the first page that owns it, else 426."""
    for owns, answer in served:
        if owns(scope):
            await answer(scope, send)
            return
    await UPGRADE_REQUIRED(scope, send)


def document_answer(document: Callable[[], dict[str, Any]]) -> Answer:
    """Answer GET (and HEAD) with `document()` as JSON; other methods 405."""

    async def answer(scope: Scope, send: ASGISendCallable) -> None:
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await method_not_allowed("GET only")(scope, send)
            return
        try:
            # stdlib json: a rare request, and envelope.py stays the one orjson edge of the wire
            body = json.dumps(document(), ensure_ascii=False).encode()
        except Exception:
            logger.exception("building the AsyncAPI document failed")
            await text(500, "Internal Server Error")(scope, send)
            return
        await Response(200, body, "application/json")(scope, send)

    return answer


def _is_path(url: str, scope: Scope) -> bool:
    # Mounted under a prefix, `path` may or may not include the `root_path` (servers and
    # frameworks differ): accept both.
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "") or "")
    return path == url or (bool(root) and path == root + url)
