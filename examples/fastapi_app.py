"""The FastAPI demo: `uvicorn examples.fastapi_app:app`, then talk to ws://127.0.0.1:8000/ws.

One router, plugged into FastAPI in each of the four ways the README lists. The `/ws`
endpoint gives every connection a real SQLAlchemy `AsyncSession` (SQLite, created and seeded
on first use) in `ws.scope["db"]` and the user from `?user=...` in `ws.scope["user"]`, both
through FastAPI `Depends`; that is where the "fetch once, use twice" hooks look for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fastapi_adapter import HandlerResult, MessageData, SocketRouter, Status

from .db import dispose, get_async_db
from .models import Article

router = SocketRouter()


@router.route("math/sum")
async def sum_handler(ws, headers, payload):  # type: ignore[no-untyped-def]
    return {"status": Status.OK, "payload": {"sum": sum(payload or [])}}


# The original README's "fetch once, use twice" example, verbatim but for the imports above.


async def data_check_article(message: MessageData, local: dict) -> bool:
    try:
        local["article_id"] = int(message.headers.get("article"))
    except (TypeError, ValueError):
        return False
    return True


async def access_article(ws: WebSocket, message: MessageData, local: dict) -> bool:
    db: AsyncSession = ws.scope["db"]
    article_id = local["article_id"]

    result = await db.execute(select(Article).where(Article.id == article_id))
    article = result.scalar_one_or_none()

    if article is None:
        local["value"] = None
        return True

    local["value"] = article  # cached for later

    user = ws.scope.get("user")
    if article.access == "PUBLIC":
        return True
    if article.access == "MEMBERS":
        return user is not None
    return article.author == user


async def article_to_json(article: Article) -> dict:
    return {
        "title": article.title,
        "author": article.author.name,
        "body": article.content,
    }


# hydrate is omitted intentionally — cached article will be used
@router.route(
    "get-article",
    options={
        "data_check": data_check_article,
        "access": access_article,
        "dehydrate": article_to_json,
    },
)
async def get_article(local: dict) -> HandlerResult:
    if local["value"] is None:
        return {"status": Status.NOT_FOUND, "payload": {"message": "not found"}}

    return {"status": Status.OK, "payload": local["value"]}


# The app.


async def get_db() -> AsyncIterator[AsyncSession]:
    """One session per connection, closed when the connection ends."""
    async with get_async_db() as db:
        yield db


def current_user(user: str | None = None) -> str | None:
    """The user named in `?user=...`: a stand-in for real authentication."""
    return user


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


app.add_api_websocket_route("/ws2", router)  # 2. FastAPI's own registration
app.router.add_websocket_route("/ws3", router)  # 3. Starlette's (was app.add_websocket_route)
app.mount("/ws4", router)  # 4. a mounted ASGI app: ws://.../ws4/ (any path below it)
