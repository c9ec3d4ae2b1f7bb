"""The example's data model: articles with an access level, written by authors."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)

    def __eq__(self, other: object) -> bool:
        # The README example compares `article.author == user`, where the user in the scope
        # is a name (as a middleware would put it there) or an Author.
        if isinstance(other, str):
            return self.name == other
        if isinstance(other, Author):
            return self.id == other.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    #: PUBLIC, MEMBERS or PRIVATE (author only)
    access: Mapped[str] = mapped_column(String(10), default="PUBLIC")
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    # joined eager loading: the example's dehydrate reads article.author.name after the query
    author: Mapped[Author] = relationship(lazy="joined")
