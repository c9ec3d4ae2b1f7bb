"""Rooms that nothing is missed in: history with resume, presence, and idempotent orders.

One process, no Redis:

    uvicorn examples.rooms:app

Several workers behind one Redis (a client may resume on any of them):

    ROOMS_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.rooms:app --workers 2

Connect with `?user=ada`. `room/join {"room": "lobby", "since": <position or null>}` subscribes
and replays what was missed since that position; every push on `room:lobby` carries its
position in `headers.offset` / `headers.epoch`. `room/who` lists the members on every worker.
`orders/create` runs once per uuid, however often the client retries it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from observable_socket_asgi import HandlerResult, SocketRouter, Status


async def authenticate(ws: Any) -> bool:
    """Put the user in the scope, where idempotent routes find their identity."""
    user = ws.query_params.get("user")
    ws.scope["user"] = user
    return bool(user)


app = SocketRouter(
    authenticate,
    backplane=os.environ.get("ROOMS_REDIS_URL") or None,
    history_size=1000,
    history_ttl=300,
    presence_ttl=float(os.environ.get("ROOMS_PRESENCE_TTL", "15")),
    presence_events=True,
    idempotency_ttl=300,
)

# how many times orders/create really ran in this worker (tests add up every worker's)
runs = 0


def _room(payload: Any) -> str:
    room = payload.get("room") if isinstance(payload, dict) else None
    if not isinstance(room, str) or not room:
        raise ValueError("payload needs a non-empty 'room'")
    return f"room:{room}"


@app.route("room/join")
async def join(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Subscribe, replaying what was missed since the client's position."""
    result = await ws.subscribe(
        _room(payload), since=payload.get("since"), presence={"name": ws.scope["user"]}
    )
    return {
        "payload": {"recovered": result.recovered, "offset": result.offset, "epoch": result.epoch}
    }


@app.route("room/leave")
async def leave(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Unsubscribe: the member leaves the room."""
    await ws.unsubscribe(_room(payload))
    return {"status": Status.OK}


@app.route("room/say")
async def say(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Publish to the room on every worker; the push gets the room's next offset."""
    await app.publish(_room(payload), {"text": payload.get("text"), "name": ws.scope["user"]})
    return {"status": Status.ACCEPTED}


@app.route("room/who")
async def who(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """The room's members on every worker: `{member_id: {"name": ...}}`."""
    return {"payload": await app.presence(_room(payload))}


@app.route("orders/create", options={"idempotent": True})
async def create_order(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """Runs once per uuid within idempotency_ttl; `work` seconds stand for a slow write."""
    global runs
    runs += 1
    await asyncio.sleep(float(payload.get("work", 0)))
    return {"status": Status.CREATED, "payload": {"order": payload.get("item"), "pid": os.getpid()}}


@app.route("orders/runs")
async def order_runs(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """How many times orders/create ran in this worker."""
    return {"payload": runs}


@app.route("rooms/status")
async def status(ws: Any, headers: Any, payload: Any) -> HandlerResult:
    """The worker's backplane health and pid."""
    return {"payload": {"backplane_connected": app.backplane.connected, "pid": os.getpid()}}
