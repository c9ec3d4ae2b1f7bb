"""Quart and the router side by side: Quart for HTTP, the router for the socket at `/ws`.

    uvicorn examples.quart_app:app

Quart has no ASGI mount, so a few lines in front of it send each WebSocket handshake for
`/ws` to the router and everything else (other paths' sockets, HTTP, the lifespan) to Quart.
`access_logic` opens the visitor's Quart session from the handshake's cookie with the app's
own session interface (the signed cookie, by default), so a user logged in through a Quart
view is the socket's user. A Quart view publishes with `await router.publish(...)`.

A user logs in with `POST /login {"username", "password"}`, opens `ws://.../ws` with the
session cookie it got, and `news/subscribe`s; `POST /news {"text"}` from a logged-in user
reaches every subscribed socket.
"""

from __future__ import annotations

import hmac
import os
from types import SimpleNamespace
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Quart, abort, request, session

from observable_socket_asgi import HandlerResult, MessageData, SocketRouter, Status

__all__ = ["PASSWORDS", "app", "quart_app", "router"]

#: Stand-in for a user table (a real one keeps password hashes, never the passwords).
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}

quart_app = Quart(__name__)
# Set QUART_SECRET_KEY anywhere but on your own machine: it signs the session cookie.
quart_app.secret_key = os.environ.get("QUART_SECRET_KEY", "quart-insecure-example-only")


async def access_logic(ws: Any) -> bool:
    """Admit the user of the handshake's Quart session; anonymous visitors too (`user` None).

    The session is opened by the app's own session interface, as for a Quart request: a
    forged or expired cookie opens an empty one.
    """
    interface = quart_app.session_interface
    opened = await interface.open_session(quart_app, SimpleNamespace(cookies=ws.cookies))
    ws.state.user = opened.get("user") if opened is not None else None
    return True


router = SocketRouter(access_logic)


def logged_in(ws: Any, message: MessageData) -> bool:
    """Per-route access: anonymous connections are answered 403."""
    return ws.state.user is not None


@router.route("me")
async def me(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Who this connection is, as the Quart session says."""
    return {"payload": {"user": ws.state.user}}


@router.route("news/subscribe", options={"access": logged_in})
async def subscribe(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Receive what `POST /news` publishes, as pushes on the `news` topic."""
    await ws.subscribe("news")
    return {"status": Status.OK}


@quart_app.post("/login")
async def login() -> dict[str, str]:
    """Check the password and keep the user in the session (the cookie a socket sends back)."""
    data = await request.get_json(silent=True) or {}
    username, password = str(data.get("username", "")), str(data.get("password", ""))
    known = PASSWORDS.get(username)
    if known is None or not hmac.compare_digest(known.encode(), password.encode()):
        abort(401)
    session["user"] = username
    return {"user": username}


@quart_app.post("/news")
async def publish_news() -> tuple[dict[str, str], int]:
    """Push the posted text to every socket subscribed to `news`."""
    user = session.get("user")
    if user is None:
        abort(401)
    data = await request.get_json(silent=True) or {}
    await router.publish("news", {"text": str(data.get("text", "")), "by": user})
    return {"published": "news"}, 201


# Quart runs the lifespan, not the router: run the router's with it (the backplane, its
# stores and the router's own on_startup/on_shutdown hooks)
quart_app.before_serving(router.startup)
quart_app.after_serving(router.shutdown)


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The socket at `/ws` to the router, everything else to Quart."""
    if scope["type"] == "websocket" and scope["path"] == "/ws":
        await router(scope, receive, send)
    else:
        # Quart types its ASGI arguments with Hypercorn's TypedDicts, not asgiref's
        await quart_app(scope, receive, send)  # type: ignore[arg-type]
