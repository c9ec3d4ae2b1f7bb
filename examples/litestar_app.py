"""Litestar and the router in one app: the router mounted as an ASGI route, sessions shared.

    uvicorn examples.litestar_app:app

Litestar hands every scope under an `@asgi` route to it, WebSocket handshakes included, after
its own middleware has run: the session middleware has put the visitor's session in
`scope["session"]` by then, so `access_logic` reads the user a Litestar login stored there.
A Litestar route publishes to the sockets with `await router.publish(...)`.

A user logs in with `POST /login {"username", "password"}` (the session cookie comes back),
opens `ws://.../ws` with that cookie, and `news/subscribe`s; `POST /news {"text"}` from a
logged-in user reaches every subscribed socket.
"""

from __future__ import annotations

import hmac
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from litestar import Litestar, Request, post
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import asgi
from litestar.middleware.session.server_side import ServerSideSessionConfig

from observable_socket_asgi import HandlerResult, MessageData, SocketRouter, Status

__all__ = ["PASSWORDS", "app", "router"]

#: Stand-in for a user table (a real one keeps password hashes, never the passwords).
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}


async def access_logic(ws: Any) -> bool:
    """Admit the user the Litestar session names; anonymous visitors too (`user` None)."""
    session = ws.scope.get("session") or {}
    ws.state.user = session.get("user")
    return True


router = SocketRouter(access_logic)


def logged_in(ws: Any, message: MessageData) -> bool:
    """Per-route access: anonymous connections are answered 403."""
    return ws.state.user is not None


@router.route("me")
async def me(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Who this connection is, as the Litestar session says."""
    return {"payload": {"user": ws.state.user}}


@router.route("news/subscribe", options={"access": logged_in})
async def subscribe(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Receive what `POST /news` publishes, as pushes on the `news` topic."""
    await ws.subscribe("news")
    return {"status": Status.OK}


# copy_scope: the router keeps per-connection state in its scope; Litestar's stays untouched
@asgi("/ws", copy_scope=True)
async def sockets(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The WebSocket endpoint: the router serves it whole."""
    await router(scope, receive, send)


@post("/login")
async def login(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Check the password and keep the user in the session (the cookie a socket sends back)."""
    data = await request.json()
    username, password = str(data.get("username", "")), str(data.get("password", ""))
    known = PASSWORDS.get(username)
    if known is None or not hmac.compare_digest(known.encode(), password.encode()):
        raise NotAuthorizedException("wrong username or password")
    request.set_session({"user": username})
    return {"user": username}


@post("/news")
async def publish_news(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Push the posted text to every socket subscribed to `news`."""
    user = request.session.get("user")
    if user is None:
        raise NotAuthorizedException("log in first")
    data = await request.json()
    await router.publish("news", {"text": str(data.get("text", "")), "by": user})
    return {"published": "news"}


app = Litestar(
    route_handlers=[sockets, login, publish_news],
    middleware=[ServerSideSessionConfig().middleware],
    # Litestar runs its own lifespan, not the router's: run the router's with it (the
    # backplane, its stores and the router's own on_startup/on_shutdown hooks)
    on_startup=[router.startup],
    on_shutdown=[router.shutdown],
)
