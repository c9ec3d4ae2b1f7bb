"""The typed example with the explorer on: typed routes, a guarded route that subscribes, a
declared push topic with history, metrics. Served by the explorer's browser tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from observable_socket_asgi import SocketRouter, Status
from tests.typed_types import Basket, Move, Order, SumIn, SumOut

router = SocketRouter(
    explorer_url="/explorer",
    asyncapi_url="/asyncapi.json",
    metrics_url="/metrics",
    history_size=100,
)


class Join(BaseModel):
    room: str = Field(min_length=1, examples=["lobby"])


@router.route("math/sum", options={"payload": SumIn, "response": SumOut})
async def sum_handler(ws: Any, headers: Any, payload: SumIn) -> dict[str, Any]:
    """Add numbers."""
    return {"status": Status.OK, "payload": {"sum": sum(payload.numbers)}}


@router.route("game/move")
async def move(ws: Any, headers: Any, payload: Move) -> dict[str, Any]:
    """Move a piece."""
    return {"payload": {"ok": True}}


@router.route("orders/create", options={"payload": Order, "response": Basket})
async def create(ws: Any, headers: Any, payload: Order) -> dict[str, Any]:
    """Place an order: nested models, an optional field."""
    return {"status": Status.CREATED, "payload": {"items": payload.items, "total": 1}}


def has_token(ws: Any, message: Any) -> bool:
    return bool(message.headers.get("token"))


@router.route("rooms/join", options={"access": has_token})
async def join(ws: Any, headers: Any, payload: Join) -> dict[str, Any]:
    """Join a room: what is published to it follows as pushes.

    Needs a `token` header. A welcome push is published to the room at once.
    """
    topic = f"room:{payload.room}"
    await ws.subscribe(topic)
    await router.publish(topic, {"sum": len(payload.room)})
    return {"status": Status.ACCEPTED, "payload": {"topic": topic}}


router.push_topic("room:{room}", payload=SumOut, description="what a room member receives")
