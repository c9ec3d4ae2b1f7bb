"""Deployment as the docs describe it: nginx in front of a real uvicorn, running the bundled
site configuration (examples/deploy/nginx.conf), uvicorn's graceful shutdown, and
`uvicorn --workers 2` sharing pushes through Redis.

nginx runs as the current user from a temporary directory (its config, pid, logs and temp
files there, `daemon off`), on a free port. On a machine without nginx these tests skip,
unless OBSERVABLE_SOCKET_REQUIRE_NGINX=1 (set by .ci/run, which installs nginx) makes that a
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.client import Client, ConnectFailed
from tests.helpers import JS_PING, MS, PROCESS_TIMEOUT, TIMEOUT, Server, pause, request, running
from tests.protocol_cases import install_routes
from tests.redis_servers import RedisServer, redis_server  # noqa: F401
from tests.servers import owns_listener, serving
from tests.test_end_to_end import error_logs, make_router

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "deploy" / "nginx.conf"
#: the JS client's heartbeat: a PING 60 s after open and every 60 s after
JS_HEARTBEAT_SECONDS = 60


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("OBSERVABLE_SOCKET_REQUIRE_NGINX") == "1":
            pytest.fail("nginx is required here (OBSERVABLE_SOCKET_REQUIRE_NGINX=1)")
        pytest.skip("nginx is not installed (.ci/run installs it)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def site_config(upstream_port: int, port: int) -> str:
    """The bundled site file with its two ports changed, and nothing else."""
    text = SITE.read_text()
    text, upstreams = re.subn(
        r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream_port};", text
    )
    text, listens = re.subn(r"listen 8080;", f"listen 127.0.0.1:{port};", text)
    assert (upstreams, listens) == (1, 1), "examples/deploy/nginx.conf changed shape"
    return text


#: a second server of the test's own, next to the bundled site: the same proxy without the
#: upgrade headers, and one whose read timeout is shorter than the traffic on the socket
TEST_SERVER = """
server {{
    listen 127.0.0.1:{port};
    location /no-upgrade/ {{
        proxy_pass http://observable_socket/;
        proxy_http_version 1.1;
    }}
    location /short-timeout/ {{
        proxy_pass http://observable_socket/;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout {short_ms}ms;
    }}
}}
"""


def tls_server(site: str, directory: Path) -> str:
    """The site's `server` block over TLS, as the deployment guide says to change it: `ssl` on the
    `listen` line and a certificate (self-signed for 127.0.0.1, made here with openssl)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    key_options = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", *key_options, "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
        timeout=PROCESS_TIMEOUT,
    )
    server = site[site.index("\nserver {") :]
    server, listens = re.subn(r"listen (\S+);", r"listen \1 ssl;", server)
    assert listens == 1
    certificate = f"    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
    return server.replace("server {\n", "server {\n" + certificate, 1)


class Nginx:
    """nginx serving the bundled site at `url` and the test's own server at `test_url`."""

    def __init__(self, directory: Path, upstream_port: int, short_ms: int, tls: bool) -> None:
        self.directory = directory
        self.upstream_port = upstream_port
        self.short_ms = short_ms
        #: also serve the bundled site over TLS at `tls_url`, with a self-signed certificate
        self.tls = tls
        self.tls_url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: BinaryIO | None = None
        self.url = self.test_url = ""

    def _write_config(self, port: int, test_port: int, tls_port: int) -> Path:
        d = self.directory
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.geteuid() == 0 else ""
        temp = "".join(
            f"    {kind}_temp_path {d / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (d / "site.conf").write_text(site_config(self.upstream_port, port))
        config = d / "nginx.conf"
        config.write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {d / 'nginx.pid'};\n"
            f"error_log {d / 'error.log'} info;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n    access_log {d / 'access.log'};\n{temp}"
            f"    include {d / 'site.conf'};\n"
            + TEST_SERVER.format(port=test_port, short_ms=self.short_ms)
            + (tls_server(site_config(self.upstream_port, tls_port), d) if self.tls else "")
            + "}\n"
        )
        return config

    def start(self) -> None:
        for _attempt in range(3):
            port, test_port, tls_port = _free_port(), _free_port(), _free_port()
            config = self._write_config(port, test_port, tls_port)
            self._stderr = (self.directory / "stderr.log").open("wb")
            self.process = subprocess.Popen(
                [nginx_binary(), "-c", str(config), "-p", str(self.directory), "-e", "stderr"],
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
            )
            ports = [port, test_port, tls_port] if self.tls else [port, test_port]
            if all(self._wait_listening(p) for p in ports):
                self.url = f"ws://127.0.0.1:{port}"
                self.test_url = f"ws://127.0.0.1:{test_port}"
                self.tls_url = f"wss://127.0.0.1:{tls_port}"
                return
            self.stop()
            if "in use" not in self.log():
                break
        raise RuntimeError(f"nginx did not start:\n{self.log()}")

    def _wait_listening(self, port: int) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                # nginx retries a bind for a while: what answers may be another copy's server
                if owns_listener(self.process.pid, port):
                    return True
            pause(20 * MS)
        return False

    def log(self) -> str:
        return "".join(
            (self.directory / name).read_text(errors="replace")
            for name in ("stderr.log", "error.log")
            if (self.directory / name).exists()
        )

    def stop(self) -> None:
        self._stop()
        if self._stderr is not None:
            self._stderr.close()

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # fast shutdown: open sockets are cut
            try:
                self.process.wait(PROCESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(PROCESS_TIMEOUT)


@contextlib.contextmanager
def behind_nginx(
    router: SocketRouter, tmp_path: Path, short_ms: int = 10_000, tls: bool = False
) -> Iterator[tuple[Server, Nginx]]:
    """Serve `router` on real uvicorn with nginx in front of it."""
    nginx_binary()
    with running(router, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as server:
        nginx = Nginx(tmp_path, server.port, short_ms, tls)
        nginx.start()
        try:
            yield server, nginx
        finally:
            nginx.stop()


def test_site_config_read_timeout_outlasts_the_heartbeats() -> None:
    """The bundled site lets a socket stay silent longer than the JS client's heartbeat
    interval (60 s) and the Python client's default one."""
    match = re.search(r"proxy_read_timeout (\d+)s;", SITE.read_text())
    assert match is not None
    read_timeout = int(match.group(1))
    assert read_timeout > JS_HEARTBEAT_SECONDS
    assert read_timeout > Client("ws://unused").heartbeat_interval  # type: ignore[operator]


def test_python_client_through_nginx(tmp_path: Path) -> None:
    """Through nginx: requests answered, a push delivered, PING answered with PONG, the
    client's heartbeat kept alive, and the client address passed on by X-Forwarded-For."""
    opened: list[Any] = []

    def count_opens(ws: Any) -> bool:
        opened.append(ws.client)
        return True

    router = SocketRouter(access_logic=count_opens)
    install_routes(router)

    @router.route("whoami")
    async def whoami(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": list(ws.client)}

    async def run(url: str) -> None:
        # as if a client at 203.0.113.9 came through another proxy: nginx appends its peer
        # (127.0.0.1, trusted by uvicorn), so uvicorn sees 203.0.113.9 as the client
        client = Client(
            url,
            heartbeat_interval=50 * MS,
            heartbeat_timeout=TIMEOUT,
            timeout=TIMEOUT,
            additional_headers={"X-Forwarded-For": "203.0.113.9"},
        )
        async with client:
            answer = await client.request("math/sum", [1, 2, 3, 4])
            assert (answer.status, answer.payload) == (200, {"sum": 10})
            assert (await client.request("push-me", 7)).payload == "pushed"
            async with asyncio.timeout(TIMEOUT):
                push = await anext(aiter(client.pushes()))
            assert (push.route, push.payload) == ("news", {"n": 7})
            # several heartbeat rounds: a PING that got no PONG would drop the socket
            await asyncio.sleep(500 * MS)
            assert (await client.request("echo", "still here")).payload == "still here"
            assert (await client.request("whoami")).payload[0] == "203.0.113.9"
        assert len(opened) == 1, "the client had to reconnect"
        async with asyncio.timeout(TIMEOUT), connect(url) as ws:
            await ws.send(JS_PING)
            pong = orjson.loads(await ws.recv())
        assert (pong["route"], pong["uuid"]) == ("PONG", "12417fc9-fd23-4930-ac51-dab24404fea6")

    with behind_nginx(router, tmp_path) as (_server, nginx):
        asyncio.run(run(f"{nginx.url}/ws"))
        assert "[emerg]" not in nginx.log() and "[crit]" not in nginx.log()


def test_client_through_nginx_over_tls(tmp_path: Path) -> None:
    """The same site over TLS: the Python client on wss:// trusting the site's certificate is
    answered; one that does not trust it fails the handshake."""
    router = SocketRouter()
    install_routes(router)

    async def run(url: str) -> None:
        trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        async with Client(url, timeout=TIMEOUT, ssl=trusting) as client:
            answer = await client.request("math/sum", [1, 2, 3, 4])
            assert (answer.status, answer.payload) == (200, {"sum": 10})
        with pytest.raises(ConnectFailed):
            await Client(url, timeout=TIMEOUT, reconnect=False).connect()

    with behind_nginx(router, tmp_path, tls=True) as (_server, nginx):
        asyncio.run(run(f"{nginx.tls_url}/ws"))


def test_handshake_fails_without_the_upgrade_headers(tmp_path: Path) -> None:
    """A proxy that does not pass Upgrade and Connection on: the server sees plain HTTP and
    answers 426 Upgrade Required, so the handshake fails."""
    router = SocketRouter()
    install_routes(router)

    async def run(url: str) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with asyncio.timeout(TIMEOUT):
                await connect(url)
        assert info.value.response.status_code == 426

    with behind_nginx(router, tmp_path) as (_server, nginx):
        asyncio.run(run(f"{nginx.test_url}/no-upgrade/ws"))


def test_read_timeout_shorter_than_the_traffic_cuts_the_socket(tmp_path: Path) -> None:
    """With `proxy_read_timeout` shorter than the silence on a socket, nginx cuts it: why the
    site sets it above the heartbeat interval. The same socket through the bundled site
    stays open over the same silence."""
    router = SocketRouter()
    install_routes(router)
    short_ms = int(300 * MS * 1000)

    async def cut_while_silent(url: str) -> ConnectionClosed:
        """Say nothing and wait for the socket to be cut."""
        async with connect(url, ping_interval=None) as ws:
            try:
                async with asyncio.timeout(TIMEOUT * 2):
                    await ws.recv()
            except ConnectionClosed as exc:
                return exc
        raise AssertionError("the silent socket was not cut")

    async def usable_after_silence(url: str) -> bool:
        """Stay silent for twice the short timeout; True if the socket is still usable."""
        async with asyncio.timeout(TIMEOUT * 2), connect(url, ping_interval=None) as ws:
            await asyncio.sleep(2 * short_ms / 1000)
            await ws.send(request("echo", 1))
            return bool(orjson.loads(await ws.recv())["payload"] == 1)

    with behind_nginx(router, tmp_path, short_ms=short_ms) as (_server, nginx):
        cut = asyncio.run(cut_while_silent(f"{nginx.test_url}/short-timeout/ws"))
        assert cut.rcvd is None  # dropped by the proxy: no close frame from the server
        assert asyncio.run(usable_after_silence(f"{nginx.url}/ws")) is True
        assert "upstream timed out" in nginx.log()


def test_graceful_shutdown_timeout_closes_1012_and_cancels_handlers() -> None:
    """uvicorn with --timeout-graceful-shutdown: open sockets close with 1012 (the JS client
    reconnects), in-flight handlers are cancelled, and nothing is logged as an error."""
    router = make_router()
    state = router.state  # type: ignore[attr-defined]

    async def run(server: Server) -> ConnectionClosed:
        async with connect(server.url) as ws:
            for n in range(3):
                await ws.send(request("hold", n, uuid=n))
            async with asyncio.timeout(TIMEOUT):
                while len(state["started"]) < 3:  # noqa: ASYNC110 - the server's thread
                    await asyncio.sleep(10 * MS)
            stopper = threading.Thread(target=server.stop)
            stopper.start()
            try:
                async with asyncio.timeout(TIMEOUT):
                    await ws.recv()
            except ConnectionClosed as exc:
                closed = exc
            await asyncio.to_thread(stopper.join, TIMEOUT)
            assert not stopper.is_alive()
            return closed

    with error_logs() as errors:
        server = Server(router, timeout_graceful_shutdown=30)
        server.start()
        try:
            closed = asyncio.run(run(server))
        finally:
            server.stop()
    assert closed.rcvd is not None and closed.rcvd.code == 1012
    assert sorted(state["cancelled"]) == [0, 1, 2]
    assert router.connections == set()
    assert [r.getMessage() for r in errors] == []


def test_uvicorn_workers_share_pushes_through_redis(redis_server: RedisServer) -> None:  # noqa: F811
    """`uvicorn examples.chat:app --workers 2` with CHAT_REDIS_URL: a client on one worker
    receives what a client on the other worker says in the room."""

    async def on_two_workers(url: str) -> tuple[ClientConnection, ClientConnection]:
        """Open connections until two land on different workers; close the others."""
        by_pid: dict[int, ClientConnection] = {}
        async with asyncio.timeout(TIMEOUT * 4):
            while len(by_pid) < 2:
                ws = await connect(url)
                await ws.send(request("chat/status"))
                status = orjson.loads(await ws.recv())["payload"]
                if status["backplane_connected"] and status["pid"] not in by_pid:
                    by_pid[status["pid"]] = ws
                else:
                    await ws.close()
        first, second = by_pid.values()
        return first, second

    async def run(url: str) -> None:
        ada, bob = await on_two_workers(url)
        try:
            await ada.send(request("room/join", {"room": "r"}))
            async with asyncio.timeout(TIMEOUT):
                while True:  # the join's answer, and the "joined" push to the room
                    frame = orjson.loads(await ada.recv())
                    if frame.get("uuid") == 1:
                        assert frame["status"] == 200
                        break
            await bob.send(request("room/say", {"room": "r", "text": "hi", "name": "bob"}))
            async with asyncio.timeout(TIMEOUT):
                while True:
                    frame = orjson.loads(await ada.recv())
                    if frame.get("route") == "room:r" and "text" in frame["payload"]:
                        break
            assert frame["payload"] == {"text": "hi", "name": "bob"}
        finally:
            await ada.close()
            await bob.close()

    env = {"CHAT_REDIS_URL": redis_server.url}
    with serving("uvicorn-websockets-sansio", "examples.chat:app", {"--workers": "2"}, env) as proc:
        asyncio.run(run(proc.url))
