"""The original README's "fetch once, use twice" example, verbatim but for the imports.

`data_check_article` reads the article id from a header and caches it in `local`;
`access_article` loads the article once (SQLAlchemy, async) and caches it in
`local["value"]`; the handler receives `local` because no `hydrate` is defined; and
`article_to_json` (dehydrate) shapes the payload only on a 2xx answer.

The hooks read the connection's database session from `ws.scope["db"]`. Included in the demo
(`examples.app`), the demo's middleware puts it there; served alone
(`uvicorn examples.articles:router`, from the clone's root), this router wraps itself in the
same middleware, so every connection gets its own session either way.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from observable_socket_asgi import Connection as WebSocket
from observable_socket_asgi import HandlerResult, MessageData, SocketRouter, Status
from observable_socket_asgi.types import ASGIReceiveCallable, ASGISendCallable, Scope

from .db import DatabaseMiddleware, dispose
from .models import Article


class ArticleRouter(SocketRouter):
    """A router that opens a database session per connection when nothing outside did."""

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        await DatabaseMiddleware(super().__call__)(scope, receive, send)


router = ArticleRouter(on_shutdown=[dispose])


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
