"""An SQLite database through SQLAlchemy's async engine, created and seeded on first use.

The file lives beside this module (`examples/articles.db`) unless `EXAMPLES_DB_URL` names
another database, e.g. `sqlite+aiosqlite:///:memory:` or a temporary file in tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from observable_socket_asgi.types import ASGIReceiveCallable, ASGISendCallable, Scope

from .models import Article, Author, Base

DEFAULT_URL = f"sqlite+aiosqlite:///{Path(__file__).with_name('articles.db')}"

_engine: AsyncEngine | None = None
_sessions: async_sessionmaker[AsyncSession] | None = None
_ready: asyncio.Lock | None = None
_seeded = False

SEED = [
    # (title, content, access, author)
    ("Hello, sockets", "A public article anyone may read.", "PUBLIC", "alice"),
    ("Members only", "Readable by any signed-in user.", "MEMBERS", "alice"),
    ("Alice's drafts", "Only alice may read this.", "PRIVATE", "alice"),
    ("Bob's notes", "Only bob may read this.", "PRIVATE", "bob"),
]


def database_url() -> str:
    return os.environ.get("EXAMPLES_DB_URL", DEFAULT_URL)


async def init_db() -> async_sessionmaker[AsyncSession]:
    """Create the engine, the tables and the seed rows once per process."""
    global _engine, _sessions, _ready, _seeded
    if _ready is None:
        _ready = asyncio.Lock()
    async with _ready:
        if _sessions is None:
            _engine = create_async_engine(database_url())
            _sessions = async_sessionmaker(_engine, expire_on_commit=False)
        if not _seeded:
            assert _engine is not None
            async with _engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with _sessions() as session:
                if (await session.execute(select(Article.id).limit(1))).first() is None:
                    authors = {name: Author(name=name) for name in ("alice", "bob")}
                    session.add_all(authors.values())
                    session.add_all(
                        Article(title=t, content=c, access=a, author=authors[who])
                        for t, c, a, who in SEED
                    )
                    await session.commit()
            _seeded = True
    return _sessions


@asynccontextmanager
async def get_async_db() -> AsyncIterator[AsyncSession]:
    """An `AsyncSession` on the example database, closed when the block ends."""
    sessions = await init_db()
    async with sessions() as session:
        yield session


async def dispose() -> None:
    """Close the engine's connections (lifespan shutdown, tests)."""
    global _engine, _sessions, _seeded, _ready
    if _engine is not None:
        await _engine.dispose()
    _engine = _sessions = None
    _seeded = False
    _ready = None


class DatabaseMiddleware:
    """Give each WebSocket connection an `AsyncSession` in `scope["db"]` and a user.

    The user comes from the query string (`?user=alice`), standing in for real
    authentication. One session serves one connection and is closed when it ends. A scope
    that already holds a `db` (put there by an outer middleware or a FastAPI dependency) is
    passed on untouched, so wrapping twice opens one session, not two.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "websocket" or "db" in scope:
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        async with get_async_db() as db:
            scope = dict(scope)  # type: ignore[assignment]
            scope["db"] = db  # type: ignore[typeddict-unknown-key]
            scope.setdefault("user", query.get("user", [None])[0])  # type: ignore[misc]
            await self.app(scope, receive, send)
