"""Real ASGI servers in subprocesses: uvicorn (each WebSocket implementation), Hypercorn,
Granian and Daphne, each on 127.0.0.1 on a free port, serving an app named by import string.

A subprocess rather than a thread, because Granian and Daphne own their process (a Rust
runtime; Twisted's reactor) and because stopping one with a signal is what an operator does.
Granian takes a port number only (no inherited socket), so a free port is picked, and the
start is retried on another one if the port was taken in between. Several copies of the suite
may run at once, so a server counts as started only once the socket listening on its port is
held by its own process tree: otherwise the other copy's server, on a port taken in between,
would answer the readiness check while this one exits with "address in use".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.helpers import PROCESS_TIMEOUT, TIMEOUT, pause

ROOT = Path(__file__).resolve().parent.parent

#: every server the suite runs the router on; `uvicorn-<impl>` names uvicorn's `--ws` choice
SERVERS = [
    "uvicorn-websockets-sansio",
    "uvicorn-websockets",
    "uvicorn-wsproto",
    "hypercorn",
    "granian",
    "daphne",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on 127.0.0.1:`port` (Linux's /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        # local address as hex "0100007F:PORT", state 0A is LISTEN, then the inode
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            inodes.add(fields[9])
    return inodes


def _tree(pid: int) -> list[int]:
    """`pid` and every process descended from it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
    return found


def owns_listener(pid: int, port: int) -> bool:
    """True when every socket listening on 127.0.0.1:`port` belongs to `pid` or a process
    it started (granian's workers, uvicorn's), and there is at least one."""
    inodes = _listening_inodes(port)
    held = set()
    for process in _tree(pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{process}/fd").iterdir():
                with contextlib.suppress(OSError):
                    held.add(os.readlink(fd))
    return bool(inodes) and all(f"socket:[{inode}]" in held for inode in inodes)


def command(
    server: str, app: str, port: int, options: Mapping[str, str] | None = None
) -> list[str]:
    """The command line that serves `app` ("module:attr") with `server` on 127.0.0.1:`port`.

    Args:
        options: extra `--name value` flags of that server, spelled as its CLI spells them.
    """
    python = sys.executable
    if server.startswith("uvicorn-"):
        impl = server.removeprefix("uvicorn-")
        argv = [python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--ws", impl, "--log-level", "warning"]
    elif server == "hypercorn":
        argv = [python, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}"]
    elif server == "granian":
        argv = [python, "-m", "granian", app, "--interface", "asgi", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--log-level", "warning"]
    elif server == "daphne":
        argv = [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    else:
        raise ValueError(f"unknown server {server!r}; expected one of {SERVERS}")
    flags = [part for name, value in (options or {}).items() for part in (name, value) if part]
    if server == "daphne":
        return argv[:-1] + flags + argv[-1:]  # daphne wants the app last
    return argv + flags


class ServerProcess:
    """One server process; `url` is `ws://127.0.0.1:<port>`, `log()` its output so far."""

    def __init__(
        self,
        server: str,
        app: str,
        options: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.server = server
        self.app = app
        self.options = dict(options or {})
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""
        # stdout and stderr go to one temporary file: a pipe nobody reads could fill and stall
        self._output = tempfile.TemporaryFile()

    def start(self) -> None:
        """Start the server and return once it accepts TCP connections."""
        for _attempt in range(3):
            self.port = _free_port()
            self.url = f"ws://127.0.0.1:{self.port}"
            self.process = subprocess.Popen(
                command(self.server, self.app, self.port, self.options),
                cwd=ROOT,
                env=self.env,
                stdout=self._output,
                stderr=subprocess.STDOUT,
            )
            if self._wait_listening():
                return
            if "in use" not in self.log().lower():
                break
        raise RuntimeError(f"{self.server} did not start serving {self.app}:\n{self.log()}")

    def _wait_listening(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT),
            ):
                if owns_listener(self.process.pid, self.port):
                    return True
            pause(0.05)
        self.kill()
        return False

    def log(self) -> str:
        """Everything the server printed so far."""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send `sig` (what Ctrl-C sends, by default) and wait for the process to exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(PROCESS_TIMEOUT)


@contextlib.contextmanager
def serving(
    server: str,
    app: str,
    options: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """Run `app` on `server` for the duration of the block, then stop it and close its log."""
    proc = ServerProcess(server, app, options, env)
    try:
        proc.start()
        yield proc
    finally:
        with contextlib.suppress(Exception):
            proc.stop()
        proc.kill()
        proc._output.close()
