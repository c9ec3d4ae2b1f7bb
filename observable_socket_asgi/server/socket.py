"""The socket that user code sees: a thin, typed object apart from the serving machinery.

Handlers, hooks and `access_logic` receive a `Socket` as `ws` (or, under the FastAPI
adapter, Starlette's `WebSocket`, whose `ws.state.observable` is the `Socket`). It reads the
handshake through `ScopeViews` (Starlette's names: `scope`, `headers`, `query_params`,
`cookies`, `client`, `state`, `path`; `state` keeps Starlette's meaning, the scope's state),
and offers the few things a handler may do to its connection: push, subscribe, unsubscribe,
close. Everything else (the reads, the one writer, the counts) stays in the connection that
carries it (`server/connection.py`), which user code never sees.

Its guards are explicit: a socket whose connection is closing or closed refuses `push()`
and `subscribe()` with `ConnectionClosed`; `close()` is idempotent. Where the connection is
in its life is `lifecycle`, a `Lifecycle`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

from ..datastructures import ScopeViews
from ..envelope import encode_push, frame_size
from ..errors import ConnectionClosed, SubscriptionLimitError
from ..pubsub.presence import NO_PRESENCE
from ..status import CloseCode, Status

if TYPE_CHECKING:
    from ..options import Settings
    from ..pubsub._history import Subscription
    from ..pubsub.topics import Topics
    from ..types import Header, Payload

__all__ = ["Carrier", "Lifecycle", "Socket"]


class Lifecycle(IntEnum):
    """Where a connection is in its life; it only moves forward.

    OPEN: requests are read and answered, pushes are sent. CLOSING: `close()` was called,
    the client left, or a limit closed it: nothing more is read or written. CLOSED: the
    connection is over; nothing of it is left running.
    """

    OPEN = 0
    CLOSING = 1
    CLOSED = 2


class Carrier(Protocol):
    """What a `Socket` needs of the connection that carries it: the server's I/O shell.

    It is also what the topics need of a subscriber (public names only), since the socket
    subscribes its connection, not itself: fan-out writes to the connection directly.
    """

    @property
    def scope(self) -> Any: ...

    @property
    def lifecycle(self) -> Lifecycle: ...

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def member_id(self) -> str: ...

    def push_nowait(self, message: dict[str, Any]) -> asyncio.Task[None] | None: ...

    async def send_frame(self, frame: str) -> None: ...

    def on_close(self, callback: Callable[[], None]) -> None: ...

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None: ...


class Socket(ScopeViews):
    """A served WebSocket as its handlers see it.

    Its read-only views of the handshake match Starlette's `WebSocket` where they overlap.
    `push()` sends this client a message it did not ask for, `subscribe()` makes it hear a
    topic, `close()` ends the connection.

    Args:
        carrier: the connection serving this socket.
        settings: the router's limits (`max_topics`, `max_topic_bytes`).
        topics: the router's topics hub.
    """

    __slots__ = ("_carrier", "_settings", "_topics")

    def __init__(self, carrier: Carrier, settings: Settings, topics: Topics) -> None:
        super().__init__(carrier.scope)
        self._carrier = carrier
        self._settings = settings
        self._topics = topics

    # State

    @property
    def lifecycle(self) -> Lifecycle:
        """Where the connection is in its life (`state` is the scope's state, as in
        Starlette)."""
        return self._carrier.lifecycle

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed: pushes are refused."""
        return self._carrier.closed

    @property
    def close_code(self) -> int | None:
        """The first close code sent or received; None while open, or if none was exchanged."""
        return self._carrier.close_code

    # Sending

    async def push(
        self,
        route: str,
        payload: Payload = None,
        headers: Header | None = None,
        status: int = Status.OK,
    ) -> None:
        """Send this client a message it did not ask for, under a fresh server uuid.

        When the writer is busy the push is queued; past `max_queued_pushes` (or the byte
        budget) the router's slow-consumer policy applies.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            EncodeError: the payload or headers cannot be encoded as JSON.
        """
        if self._carrier.lifecycle is not Lifecycle.OPEN:
            raise ConnectionClosed("connection is closed")
        await self._carrier.send_frame(encode_push(route, payload, headers, status))

    async def send_frame(self, frame: str) -> None:
        """Send an already encoded push frame (`envelope.encode_push`), as `push()` does.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        await self._carrier.send_frame(frame)

    def send_frame_nowait(self, frame: str) -> asyncio.Task[None] | None:
        """Send an already encoded push without awaiting it; a closed connection skips it.

        Returns:
            The task finishing a write that had to wait for the socket, else None.
        """
        return self._carrier.push_nowait({"type": "websocket.send", "text": frame})

    # Topics

    async def subscribe(
        self, topic: str, since: Any = None, presence: Any = NO_PRESENCE
    ) -> Subscription:
        """Receive, as pushes, what is published to `topic`, until unsubscribed or closed.

        Args:
            topic: the topic.
            since: the client's last position, `{"offset": n, "epoch": e}` (from the
                `headers` of the last push it received), or None. With the router's history
                on, every push after it that is still kept is sent first, in order, then the
                live ones, with no duplicate and no gap.
            presence: any JSON value: the connection becomes a member of the topic with this
                info (`router.presence(topic)`) until it unsubscribes or disconnects.

        Returns:
            A `Subscription`: `recovered` (False: the gap could not be filled; reload the
            state), and the topic's `offset` and `epoch` (None without history).

        Raises:
            ConnectionClosed: the connection is closing or closed.
            SubscriptionLimitError: `topic` is longer than the router's `max_topic_bytes`,
                or this connection already holds `max_topics` topics (a `ValueError` with a
                `status` of 400, for the handler to answer with).
            ValueError: `since` is not a position, or `presence` is too large.
        """
        carrier = self._carrier
        if type(topic) is str:
            self._check_limits(topic)
        if carrier.lifecycle is not Lifecycle.OPEN:
            raise ConnectionClosed("cannot subscribe a closed connection")
        subscription: Subscription = await self._topics.subscribe(carrier, topic, since, presence)
        return subscription

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving `topic`; a topic this connection does not hold is ignored."""
        await self._topics.unsubscribe(self._carrier, topic)

    # Closing

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection; in-flight requests are cancelled. Idempotent."""
        await self._carrier.close(code, reason)

    # Private methods

    def _check_limits(self, topic: str) -> None:
        """Refuse a topic name over `max_topic_bytes`, or one topic past `max_topics`."""
        settings = self._settings
        limit = settings.max_topic_bytes
        # len() bounds the UTF-8 size from below and 4 x len() from above: encode only
        # when the name could be over the limit
        if len(topic) > limit or (len(topic) * 4 > limit and frame_size(topic) > limit):
            raise SubscriptionLimitError(
                f"topic name is {frame_size(topic)} bytes, over the limit of {limit}",
                "max_topic_bytes",
            )
        held = self._topics.topics_of(self._carrier)
        if len(held) >= settings.max_topics and topic not in held:
            raise SubscriptionLimitError(
                f"a connection may subscribe to {settings.max_topics} topics at most",
                "max_topics",
            )
