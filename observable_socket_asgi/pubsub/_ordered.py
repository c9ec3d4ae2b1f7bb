"""One ordered writer per process: Redis commands leave in the order they were called.

Rules of the writer (this module alone changes them):

    A pool of connections reorders concurrent publishes: two `await redis.publish(...)`
    started one after the other may take two connections, and the second can reach Redis
    first. So every publish of a process goes through one `OrderedWriter`: `send()` appends
    the command to a queue at once (in the caller's order, before any await) and returns a
    future; one task sends the queue as a pipeline (one round trip), waits for its replies,
    then sends what queued meanwhile as the next pipeline. A batch is at most `max_batch`
    commands. Order holds whichever connection a batch takes, because the next batch is
    sent only after Redis answered the previous one.

    A script run by digest (`EVALSHA`) that Redis does not know (it restarted, or another
    node of a cluster) fails with NOSCRIPT for every command of the batch that uses it: the
    writer loads the script and sends those commands again, in their order, before the next
    batch. A batch whose connection turns out dead is sent once more on a fresh one (it
    may then reach Redis twice, as a retried PUBLISH may); one that fails again, or takes
    longer than `timeout`, fails each of its futures with that error, and the next batch is
    tried afresh.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

__all__ = ["OrderedWriter", "Script"]

#: commands sent in one pipeline at most: bounds the bytes of one round trip
MAX_BATCH = 512


class Script:
    """A Lua script, run by its SHA-1 digest once Redis has it."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


class OrderedWriter:
    """Sends commands to Redis in call order, batching what queues while a batch is out.

    Args:
        client: a `redis.asyncio` client (single, sentinel or cluster); only its
            `pipeline(transaction=False)` and `script_load` are used.
        timeout: seconds a round trip may take; past it every command of the batch fails
            with TimeoutError (one timer per batch, not one per command).
        max_batch: commands per pipeline at most.
    """

    def __init__(self, client: Any, timeout: float, max_batch: int = MAX_BATCH) -> None:
        self.client = client
        self.timeout = timeout
        self.max_batch = max_batch
        #: pipelines sent, and commands in them: their ratio is the batching achieved
        self.batches = 0
        self.commands = 0
        # (command, its script or None, the caller's future), oldest first
        self._queue: list[tuple[Sequence[Any], Script | None, asyncio.Future[Any]]] = []
        # the task sending the queue; None while the queue is empty
        self._sender: asyncio.Task[None] | None = None

    def send(self, *command: Any) -> asyncio.Future[Any]:
        """Queue `command` behind every earlier one; the future holds Redis's reply."""
        return self._enqueue(command, None)

    def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Queue an EVALSHA of `script`; the future holds the script's return value."""
        return self._enqueue(("EVALSHA", script.sha, len(keys), *keys, *args), script)

    async def aclose(self) -> None:
        """Send what is queued, then stop (the client stays open: it is the caller's)."""
        sender = self._sender
        if sender is not None:
            await asyncio.gather(sender, return_exceptions=True)

    # Private methods

    def _enqueue(self, command: Sequence[Any], script: Script | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, script, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send_all(), name="observable-socket redis writer")
        return future

    async def _send_all(self) -> None:
        """Send the queue batch by batch until it is empty.

        Nobody awaits this task but `aclose()`: every failure goes to the futures of the
        batch it hit, and the task ends when the queue is empty.
        """
        queue = self._queue
        try:
            while queue:
                batch = queue[: self.max_batch]
                del queue[: self.max_batch]
                await self._send_batch(batch)
        finally:
            self._sender = None

    async def _send_batch(
        self, batch: list[tuple[Sequence[Any], Script | None, asyncio.Future[Any]]]
    ) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                replies = await self._sent(batch)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # its caller gave up waiting; the command was sent all the same
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _sent(
        self, batch: list[tuple[Sequence[Any], Script | None, asyncio.Future[Any]]]
    ) -> list[Any]:
        """Send `batch` as one pipeline (and its scripts Redis lacked, again); the replies."""
        replies = await self._pipeline([command for command, _, _ in batch])
        missing = [
            i for i, reply in enumerate(replies) if batch[i][1] is not None and _is_noscript(reply)
        ]
        if missing:
            for script in {batch[i][1] for i in missing}:
                assert script is not None
                await self.client.script_load(script.text)
            again = await self._pipeline([batch[i][0] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, commands: list[Sequence[Any]]) -> list[Any]:
        from redis.exceptions import ConnectionError as RedisConnectionError

        self.batches += 1
        self.commands += len(commands)
        try:
            return await self._execute(commands)
        except RedisConnectionError:
            # A pooled connection that died with a Redis restart (or a failed-over master)
            # fails once; redis-py has dropped it, so the batch goes again, whole and in
            # order, on a fresh connection.
            return await self._execute(commands)

    async def _execute(self, commands: list[Sequence[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))


def _is_noscript(reply: Any) -> bool:
    from redis.exceptions import NoScriptError

    return isinstance(reply, NoScriptError)
