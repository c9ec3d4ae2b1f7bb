"""Authentication patterns: a token in the query string or a cookie, checked once per connection.

Run it with `uvicorn examples.auth:app`. `access_logic` runs before the connection is served;
saying no accepts then closes with 1008, so the JS client does not retry. The user it finds is
stored on the connection (`ws.state.user`, and `ws.scope["user"]` for ASGI middleware
compatibility) and read by per-route `access` hooks, so the token is checked once, not per
message.

Cookie authentication needs the Origin allow-list: browsers send cookies on a cross-site
WebSocket handshake and do not apply CORS to it, so without `allowed_origins` any page the
user visits could open an authenticated socket (cross-site WebSocket hijacking). A token in
the query string is not sent automatically by the browser, so it is not exposed that way,
but it lands in access logs: keep it short-lived.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from observable_socket_asgi import MessageData, SocketRouter, Status

__all__ = ["USERS", "User", "app", "authenticate"]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    roles: frozenset[str]


#: Stand-in for a session store or a token verifier (JWT, database lookup...).
USERS: dict[str, User] = {
    "alice-token": User("alice", frozenset({"reader", "admin"})),
    "bob-token": User("bob", frozenset({"reader"})),
}


def authenticate(token: str | None) -> User | None:
    """Return the user a token belongs to, comparing in constant time."""
    if not token:
        return None
    for known, user in USERS.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            return user
    return None


async def access_logic(ws: Any) -> bool:
    """Admit a connection carrying a valid token: `?token=...` first, then a `session` cookie."""
    user = authenticate(ws.query_params.get("token") or ws.cookies.get("session"))
    if user is None:
        return False  # closed with 1008 "access denied"; the JS client does not reconnect
    ws.state.user = user  # per connection, for handlers and hooks
    ws.scope["user"] = user  # where ASGI auth middleware would have put it
    return True


app = SocketRouter(
    access_logic,
    # Required for the cookie: only these pages may open an authenticated socket.
    allowed_origins=["https://app.example.com", "https://*.example.com"],
    # A non-browser client sends no Origin and cannot ride a browser's cookie; allow it.
    require_origin=False,
    rate_limit=(50, 1.0),
    handler_timeout=10.0,
)


def is_admin(ws: Any, message: MessageData) -> bool:
    """Per-route access: the user was found once, at the handshake."""
    return "admin" in ws.state.user.roles


@app.route("me")
async def me(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    user: User = ws.state.user
    return {"payload": {"name": user.name, "roles": sorted(user.roles)}}


@app.route("admin/stats", options={"access": is_admin, "rate_limit": (5, 60.0)})
async def admin_stats(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    return {"status": Status.OK, "payload": {"users": len(USERS)}}
