"""A chat with rooms: topics and server push, in one process or many.

One process, no Redis:

    uvicorn examples.chat:app

Several workers (or hosts) behind one Redis:

    CHAT_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.chat:app --workers 2

A client sends `room/join {"room": "lobby", "name": "ada"}`, then `room/say {"room": "lobby",
"text": "hi"}`; everyone in the room, on every worker, receives a push whose `route` is
`room:lobby`. Payloads are checked in each route's `data_check`, so a missing or malformed
one is answered 400 before the handler runs.
"""

from __future__ import annotations

import os
from typing import Any

from observable_socket_asgi import HandlerResult, MessageData, SocketRouter, Status

app = SocketRouter(backplane=os.environ.get("CHAT_REDIS_URL") or None)


def has_room(message: MessageData) -> bool:
    """The payload is an object with a non-empty string `room` (else: 400)."""
    payload = message.payload
    room = payload.get("room") if isinstance(payload, dict) else None
    return isinstance(room, str) and bool(room)


def has_room_and_text(message: MessageData) -> bool:
    """`room/say` needs a room and a string `text` (else: 400)."""
    return has_room(message) and isinstance(message.payload.get("text"), str)


def _room(payload: dict[str, Any]) -> str:
    return f"room:{payload['room']}"


@app.route("room/join", options={"data_check": has_room})
async def join(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Subscribe this connection to the room and tell the room."""
    topic = _room(payload)
    await ws.subscribe(topic)
    await app.publish(topic, {"event": "joined", "name": payload.get("name")})
    return {"status": Status.OK, "payload": {"topic": topic}}


@app.route("room/leave", options={"data_check": has_room})
async def leave(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Unsubscribe this connection from the room."""
    await ws.unsubscribe(_room(payload))
    return {"status": Status.OK}


@app.route("room/say", options={"data_check": has_room_and_text})
async def say(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Publish a message to everyone in the room, on every worker."""
    await app.publish(_room(payload), {"text": payload.get("text"), "name": payload.get("name")})
    return {"status": Status.ACCEPTED}


@app.route("chat/status")
async def status(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """The worker's backplane health: load balancers and tests read it."""
    return {"payload": {"backplane_connected": app.backplane.connected, "pid": os.getpid()}}
