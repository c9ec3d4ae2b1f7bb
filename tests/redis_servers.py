"""A throwaway redis-server for one test, on a unix socket in a directory of its own.

Not on a TCP port: several copies of the suite run at once (one per Python), and a port
picked as free by one copy can be taken by another before redis-server binds it, or after a
test kills its server and before it starts it again on the same address. A redis-server that
fails to bind then exits, while the readiness check is answered by the other copy's server,
and two tests silently share (and flush) one Redis. A socket file in a private temporary
directory cannot be taken by anyone else, and a restart finds the same address free.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import MS, PROCESS_TIMEOUT, TIMEOUT, pause

#: how long a redis-server may take to answer its first PING (it starts in milliseconds)
START_TIMEOUT = 10_000 * MS


class RedisServer:
    """A redis-server without persistence and without TCP, listening on `path` only.

    `url` is its `unix://` URL, which redis-py, the backplane and the examples take as they
    take a `redis://` one. `kill()` then `start()` restarts it empty on the same socket.
    """

    def __init__(self, executable: str) -> None:
        self.executable = executable
        # mkdtemp makes the directory readable by this user only; a short name keeps the
        # socket path under the 107 bytes a unix socket address holds
        self.directory = Path(tempfile.mkdtemp(prefix="redis-"))
        self.path = self.directory / "redis.sock"
        self.url = f"unix://{self.path}?db=0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once it answers PING on its socket."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left behind by a killed server; not an answer to wait for
        log = self.directory / "redis.log"
        with log.open("ab") as output:
            self.proc = subprocess.Popen(
                [
                    self.executable,
                    "--port", "0",
                    "--unixsocket", str(self.path),
                    "--unixsocketperm", "700",
                    "--dir", str(self.directory),
                    "--save", "",
                    "--appendonly", "no",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server did not start on {self.path}:\n"
                    + log.read_text(errors="replace")[-2000:]
                )
            pause(20 * MS)

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(500 * MS)
                sock.connect(str(self.path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server at once (SIGKILL: no goodbye to its clients), and reap it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(PROCESS_TIMEOUT)
            self.proc = None

    def close(self) -> None:
        """Kill the server if it runs and remove its directory."""
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def client(self, **options: Any) -> Any:
        """A `redis.asyncio.Redis` on this server that fails within TIMEOUT rather than
        waiting forever on a connection that never answers."""
        import redis.asyncio as aioredis

        options.setdefault("socket_timeout", TIMEOUT)
        options.setdefault("socket_connect_timeout", TIMEOUT)
        return aioredis.Redis.from_url(self.url, **options)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for one test; skipped (or failed in CI) when it is not installed."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("OBSERVABLE_SOCKET_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is required here (OBSERVABLE_SOCKET_REQUIRE_REDIS=1)")
        pytest.skip("redis-server not found: apt-get install redis-server")
    server = RedisServer(executable)
    try:
        server.start()
        yield server
    finally:
        server.close()
