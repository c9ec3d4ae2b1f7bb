"""The FastAPI demo: `uvicorn examples.fastapi_app:app`, then talk to ws://127.0.0.1:8000/ws.

One router, plugged into FastAPI in each of the four ways the documentation lists, and each
way gives every connection a real SQLAlchemy `AsyncSession` (SQLite, created and seeded on
first use) in `ws.scope["db"]` and the user from `?user=...` in `ws.scope["user"]`, where the
"fetch once, use twice" hooks look for them: way 1 through `Depends` in its endpoint, way 2
through the route's `dependencies=`, ways 3 and 4 through an ASGI middleware around the router.
Run it from the clone's root: `uvicorn examples.fastapi_app:app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi_adapter import SocketRouter, Status

from . import articles
from .db import DatabaseMiddleware, dispose, get_async_db

router = SocketRouter()


@router.route("math/sum")
async def sum_handler(ws, headers, payload):  # type: ignore[no-untyped-def]
    return {"status": Status.OK, "payload": {"sum": sum(payload or [])}}


# The original README's "fetch once, use twice" route, from `examples/articles.py`: served
# here its hooks receive Starlette's WebSocket, whose `scope` holds the same session and user.
router.include_router(articles.router)


# The app.


async def get_db() -> AsyncIterator[AsyncSession]:
    """One session per connection, closed when the connection ends."""
    async with get_async_db() as db:
        yield db


def current_user(user: str | None = None) -> str | None:
    """The user named in `?user=...`: a stand-in for real authentication."""
    return user


async def attach_db(
    ws: WebSocket,
    db: Annotated[AsyncSession, Depends(get_db)],
    user: Annotated[str | None, Depends(current_user)],
) -> None:
    """A route dependency that puts the session and the user where the hooks read them."""
    ws.scope["db"] = db
    ws.scope["user"] = user


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await dispose()


app = FastAPI(lifespan=lifespan)


@app.websocket("/ws")  # 1. inside an endpoint, after attaching db and user to ws.scope
async def websocket_router(
    ws: WebSocket,
    db: Annotated[AsyncSession, Depends(get_db)],
    user: Annotated[str | None, Depends(current_user)],
) -> None:
    ws.scope["db"] = db
    ws.scope["user"] = user
    await router(ws)


# 2. FastAPI's own registration, the session from the route's dependencies
app.add_api_websocket_route("/ws2", router, dependencies=[Depends(attach_db)])
# 3. Starlette's registration (was app.add_websocket_route), the session from a middleware
app.router.add_websocket_route("/ws3", DatabaseMiddleware(router))
# 4. a mounted ASGI app: ws://.../ws4/ (any path below it), the session from a middleware
app.mount("/ws4", DatabaseMiddleware(router))
