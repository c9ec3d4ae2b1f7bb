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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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
