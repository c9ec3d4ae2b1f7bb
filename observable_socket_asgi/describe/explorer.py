"""The explorer: a page, served by the router itself, that lists and tries its routes.

The page is static HTML, CSS and JavaScript shipped in the package (`describe/explorer_static/`):
no CDN, no build step, no inline script. It reads what the router says about itself from
`<base>/api.json` (the AsyncAPI document, and which hooks guard each route), opens a
WebSocket to the router's own path and speaks the wire protocol there like any client, so
`allowed_origins`, `access_logic` and the rate limits apply to it as to any other. With
metrics on, `<base>/top.json` hands it the same figures `observable-socket top` reads.

What is served under the page's path `<base>` (the router's `explorer_url`, or the mount
point of `Explorer.for_socket(...)`):

    <base>, <base>/        the page (its asset URLs carry a content hash)
    <base>/explorer.js     the script; .css the style; favicon.svg the icon
    <base>/api.json        the router described (built on each request: routes may be added)
    <base>/top.json        one metrics snapshot, or 404 without metrics

Every answer carries a strict Content-Security-Policy; assets are cached for good under
their hashed URL, the page and the JSON are revalidated (`ETag`, 304) or never stored.
"""

from __future__ import annotations

import hashlib
import html
import importlib.resources
import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._responses import Response, header

if TYPE_CHECKING:
    from ..observe.metrics import PrometheusMetrics
    from ..types import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["Asset", "Explorer", "check_url", "load_assets"]

logger = logging.getLogger("observable_socket_asgi.explorer")

#: the files of the page, by the name they are served under
_FILES = {
    "explorer.js": "text/javascript; charset=utf-8",
    "explorer.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# a Host header fit to appear in the policy; anything else leaves `connect-src` at 'self'
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")
_IMMUTABLE = b"public, max-age=31536000, immutable"


class _Router(Protocol):
    """What the explorer reads of a router."""

    @property
    def routes(self) -> dict[str, Any]: ...

    @property
    def metrics(self) -> PrometheusMetrics | None: ...

    def asyncapi(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the page, read once: its bytes, type and content hash (the ETag)."""

    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Read the page's files from the package data (`explorer_static/`)."""
    folder = importlib.resources.files(__package__ or __name__).joinpath("explorer_static")
    assets = {}
    for name, content_type in (("index.html", "text/html; charset=utf-8"), *_FILES.items()):
        body = folder.joinpath(name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[name] = Asset(body, content_type, etag)
    return assets


def check_url(name: str, url: str | None) -> None:
    """Refuse a path that is not absolute, or ends with a slash.

    Raises:
        ValueError: naming the option.
    """
    if url is None:
        return
    if not isinstance(url, str) or not url.startswith("/") or (url != "/" and url.endswith("/")):
        raise ValueError(f"{name} must be a path starting with '/' (no trailing '/'), got {url!r}")


class Explorer:
    """The explorer page of one router, an ASGI app for plain HTTP.

    The router serves it at its `explorer_url`; to serve it elsewhere (FastAPI, where the
    socket is a route of its own), mount `router.explorer.for_socket("/ws")`.

    Args:
        router: the router described and tried.
        base: the page's path, below the scope's `root_path`; "" when mounted.
        socket_url: the path the page opens its WebSocket to; None: the page's own path
            (the router serves every WebSocket path it is given).
    """

    __slots__ = ("_assets", "_base", "_router", "_socket_url")

    def __init__(self, router: _Router, base: str = "", socket_url: str | None = None) -> None:
        check_url("socket_url", socket_url)
        self._router = router
        self._base = "" if base == "/" else base
        self._socket_url = socket_url
        # read once: a few tens of KiB, served from memory
        self._assets = load_assets()

    # Public API

    def for_socket(self, socket_url: str) -> Explorer:
        """Return the page as an app to mount anywhere, opening its socket at `socket_url`.

        `app.mount("/explorer", router.explorer.for_socket("/ws"))` in FastAPI or Starlette.
        """
        return Explorer(self._router, "", socket_url)

    def owns(self, scope: Scope) -> bool:
        """Whether the HTTP request of `scope` is for this page or one of its files."""
        return self._relative(scope) is not None

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Serve one HTTP request (an ASGI app of its own, as `router.metrics` is)."""
        if scope["type"] != "http":
            raise ValueError(f"the explorer serves http only, got {scope['type']!r}")
        await self.serve(scope, send)

    async def serve(self, scope: Scope, send: ASGISendCallable) -> None:
        """Answer a GET or HEAD for the page or a file of it; 405 or 404 otherwise."""
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _send(send, scope, 405, b"405 Method Not Allowed: GET only.\n",
                        "text/plain; charset=utf-8", [(b"allow", b"GET, HEAD")])  # fmt: skip
            return
        name = self._relative(scope)
        if name in ("", "/"):
            await self._page(scope, send)
        elif name is not None and name[1:] in _FILES:
            asset = self._assets[name[1:]]
            await _send(send, scope, 200, asset.body, asset.content_type,
                        [(b"cache-control", _IMMUTABLE)], etag=asset.etag)  # fmt: skip
        elif name == "/api.json":
            await self._json(scope, send, self.describe())
        elif name == "/top.json" and self._router.metrics is not None:
            await self._json(scope, send, self.snapshot())
        else:
            await _send(send, scope, 404, b"404 Not Found\n", "text/plain; charset=utf-8", [])

    def describe(self) -> dict[str, Any]:
        """What the page shows: the AsyncAPI document, and each route's hooks and limits."""
        routes = {}
        for name, route in self._router.routes.items():
            hooks = [h for h in ("data_check", "access", "hydrate", "dehydrate")
                     if getattr(route, h, None) is not None]  # fmt: skip
            routes[name] = {
                "hooks": hooks,
                "timeout": route.timeout,
                "rate_limit": route.rate_limit,
                "idempotent": route.idempotent,
            }
        return {
            "asyncapi": self._router.asyncapi(),
            "routes": routes,
            "metrics": self._router.metrics is not None,
        }

    def snapshot(self) -> dict[str, Any]:
        """One scrape of the router's metrics as `observable-socket top` reads it: cumulative
        figures; the page takes rates and percentiles between two of them."""
        from ..observe._top import parse

        metrics = self._router.metrics
        if metrics is None:
            raise LookupError("the router has no metrics (set metrics_url)")
        body, _ = metrics.exposition()
        snap = asdict(parse(body.decode(), 0.0))
        del snap["at"]  # the page times its own scrapes
        for stats in snap["routes"].values():
            # JSON has no infinity: the `+Inf` bucket's bound is written null
            stats["buckets"] = [[None if math.isinf(b) else b, n] for b, n in stats["buckets"]]
        return snap

    # Private methods

    def _relative(self, scope: Scope) -> str | None:
        # Mounted under a prefix, `path` may or may not include the `root_path` (servers
        # and frameworks differ): accept both, as the AsyncAPI path does.
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", "") or "")
        if root and path.startswith(root + "/"):
            path = path[len(root) :]
        elif root and path == root:
            path = ""
        base = self._base
        if path == base:
            return ""
        if path.startswith(base + "/"):
            return path[len(base) :]
        return None

    async def _page(self, scope: Scope, send: ASGISendCallable) -> None:
        root = str(scope.get("root_path", "") or "")
        base = root + self._base
        index = self._assets["index.html"]
        values = {
            "base": base,
            "socket": self._socket_url if self._socket_url is not None else (base or "/"),
            **{
                f"v_{name.replace('.', '_')}": asset.etag.strip('"')
                for name, asset in self._assets.items()
            },
        }
        text = index.body.decode()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
        body = text.encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        await _send(send, scope, 200, body, index.content_type,
                    [(b"cache-control", b"no-cache")], etag=etag)  # fmt: skip

    async def _json(self, scope: Scope, send: ASGISendCallable, value: Any) -> None:
        try:
            # stdlib json: a rare request; envelope.py stays the one orjson edge of the wire
            body = json.dumps(value, ensure_ascii=False).encode()
        except Exception:
            logger.exception("describing the router for the explorer failed")
            await _send(send, scope, 500, b"500 Internal Server Error\n",
                        "text/plain; charset=utf-8", [])  # fmt: skip
            return
        await _send(send, scope, 200, body, "application/json",
                    [(b"cache-control", b"no-store")])  # fmt: skip


def _policy(scope: Scope) -> bytes:
    """The Content-Security-Policy of every answer: this origin only, and its WebSocket."""
    connect = "'self'"
    host = header(scope, b"host")
    if host is not None and _HOST.fullmatch(host):
        connect += f" ws://{host} wss://{host}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'; object-src 'none'"
    ).encode()


async def _send(
    send: ASGISendCallable,
    scope: Scope,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]],
    etag: str | None = None,
) -> None:
    headers = [
        (b"content-security-policy", _policy(scope)),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        *extra,
    ]
    if etag is not None:
        headers.append((b"etag", etag.encode()))
        if _matches(header(scope, b"if-none-match"), etag):
            status, body = 304, b""
    await Response(status, body, content_type, headers)(scope, send)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
