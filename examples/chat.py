"""A chat with rooms: topics and server push, in one process or many.

One process, no Redis:

    uvicorn examples.chat:app

Several workers (or hosts) behind one Redis:

    CHAT_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.chat:app --workers 2

A client sends `room/join {"room": "lobby", "name": "ada"}`, then `room/say {"room": "lobby",
"text": "hi"}`; everyone in the room, on every worker, receives a push whose `route` is
`room:lobby`, signed with the name given at join (kept on the connection, per room).
Payloads are checked in each route's `data_check`, so a missing or malformed one is answered
400 before the handler runs.
"""

from __future__ import annotations

import os
from typing import Any

from observable_socket_asgi import HandlerResult, MessageData, SocketRouter, Status

app = SocketRouter(backplane=os.environ.get("CHAT_REDIS_URL") or None)


# The checks are `async def` though they never wait: a plain `def` hook runs on the router's
# thread pool, and requests whose hooks come back from the threads out of order would publish
# out of order. An `async def` runs at once, in the order the requests arrived.
async def has_room(message: MessageData) -> bool:
    """The payload is an object with a non-empty string `room` (else: 400)."""
    payload = message.payload
    room = payload.get("room") if isinstance(payload, dict) else None
    return isinstance(room, str) and bool(room)


async def has_room_and_text(message: MessageData) -> bool:
    """`room/say` needs a room and a string `text` (else: 400)."""
    return await has_room(message) and isinstance(message.payload.get("text"), str)


def _room(payload: dict[str, Any]) -> str:
    return f"room:{payload['room']}"


def _names(ws: Any) -> dict[str, Any]:
    """The name this connection joined each room under: `room/say` signs with it, so a
    client gives its name once, at join. Kept in the connection's own state, which ends
    with it."""
    try:
        names: dict[str, Any] = ws.state.chat_names
    except AttributeError:
        names = ws.state.chat_names = {}
    return names


@app.route("room/join", options={"data_check": has_room})
async def join(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Subscribe this connection to the room and tell the room."""
    topic = _room(payload)
    await ws.subscribe(topic)
    _names(ws)[topic] = name = payload.get("name")
    await app.publish(topic, {"event": "joined", "name": name})
    return {"status": Status.OK, "payload": {"topic": topic}}


@app.route("room/leave", options={"data_check": has_room})
async def leave(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Unsubscribe this connection from the room."""
    topic = _room(payload)
    await ws.unsubscribe(topic)
    _names(ws).pop(topic, None)
    return {"status": Status.OK}


@app.route("room/say", options={"data_check": has_room_and_text})
async def say(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Publish a message to everyone in the room, on every worker, signed with the name
    given at join (a connection that never joined it may give one with the message)."""
    topic = _room(payload)
    name = _names(ws).get(topic, payload.get("name"))
    await app.publish(topic, {"text": payload["text"], "name": name})
    return {"status": Status.ACCEPTED}


@app.route("chat/status")
async def status(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """The worker's backplane health: load balancers and tests read it."""
    return {"payload": {"backplane_connected": app.backplane.connected, "pid": os.getpid()}}
