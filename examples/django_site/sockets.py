"""The project's WebSocket side: a SocketRouter that knows Django's users and models.

Import it after `django.setup()` (asgi.py does): it imports the models.

The user is found once per connection, in `access_logic`, from Django's own session cookie
and with Django's own code (`aget_user`: the session's backend, and its hash, so after a
password change or a logout an old cookie opens an anonymous socket). Anonymous visitors are
admitted, as Django's `request.user` admits them; the routes that need a user say so in their
`access` hook.

The ORM, done right in a handler: an `async def` handler uses the async API (`aget`,
`acreate`, `async for`), which runs each query on Django's own database thread; where Django
has no async API (a transaction), the code goes in a plain function run by
`database_sync_to_async`. A plain `def` handler would run on the router's own worker threads,
each keeping a database connection that nothing closes: keep the ORM out of them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from importlib import import_module
from types import SimpleNamespace
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import aget_user
from django.contrib.auth.models import AnonymousUser
from django.db import close_old_connections, transaction

from observable_socket_asgi import HandlerResult, MessageData, SocketRouter, Status

from .models import Note

__all__ = ["NOTES", "access_logic", "database_sync_to_async", "router"]

#: the topic every new note is published to, from a socket or from a view
NOTES = "notes"

P = ParamSpec("P")
R = TypeVar("R")


def database_sync_to_async(fn: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """`fn` run on Django's database thread, its stale connections closed before and after.

    Django closes a request's connections when the request ends; a socket's messages have no
    such end, so, as Channels does, each call closes the connections that outlived
    `CONN_MAX_AGE` or broke, instead of failing on them. It runs on the thread the async
    ORM's queries run on (asgiref's thread-sensitive one), so it tidies their connection too.
    """

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run)


async def access_logic(ws: Any) -> bool:
    """Admit the connection as the user of its `sessionid` cookie, or as anonymous.

    The session is read with the store Django is configured with (`SESSION_ENGINE`), and the
    user checked by Django's `aget_user`, exactly as for an HTTP request.
    """
    key = ws.cookies.get(settings.SESSION_COOKIE_NAME)
    if key:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
        user = await aget_user(SimpleNamespace(session=store))
    else:
        user = AnonymousUser()
    ws.state.user = user  # for the hooks and handlers
    ws.scope["user"] = user  # where Django code and ASGI middleware look for it
    return True


router = SocketRouter(
    access_logic,
    allowed_origins=settings.SOCKET_ALLOWED_ORIGINS,
    # scripts and the Python client send no Origin and carry no browser's cookie
    require_origin=False,
)


def logged_in(ws: Any, message: MessageData) -> bool:
    """Per-route access: anonymous connections are answered 403."""
    return bool(ws.state.user.is_authenticated)


def has_text(message: MessageData) -> bool:
    """`notes/add` needs `{"text": "..."}`, 1 to 500 characters (else: 400)."""
    payload = message.payload
    text = payload.get("text") if isinstance(payload, dict) else None
    return isinstance(text, str) and 0 < len(text) <= 500


@router.route("me")
async def me(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Who this connection is: the Django user found at the handshake."""
    user = ws.state.user
    name = user.get_username() if user.is_authenticated else None
    return {"payload": {"username": name}}


@router.route("notes/list", options={"access": logged_in})
async def list_notes(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """The user's ten latest notes, read with the async ORM."""
    notes = Note.objects.filter(author=ws.state.user).select_related("author")[:10]
    return {"payload": [note.as_dict() async for note in notes]}


def _add_note(user: Any, text: str) -> dict[str, Any]:
    # no async transaction API: this whole function runs on Django's thread
    with transaction.atomic():
        note = Note.objects.create(author=user, text=text)
        return note.as_dict()


@router.route("notes/add", options={"access": logged_in, "data_check": has_text})
async def add_note(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Save a note in a transaction, then tell every subscriber."""
    note = await database_sync_to_async(_add_note)(ws.state.user, payload["text"])
    await router.publish(NOTES, note)
    return {"status": Status.CREATED, "payload": note}


@router.route("notes/subscribe")
async def subscribe(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Receive every new note as a push on the `notes` topic, anonymous visitors too."""
    await ws.subscribe(NOTES)
    return {"status": Status.OK}
