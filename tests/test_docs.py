"""Every fenced code block in README.md and docs/ runs here, one test per block (`file:line`).

How a block is run depends on its language and on an HTML comment on the line before it:

- `python`: a block whose first line is `# name.py` is a module: every such block of the page
  is written to a temporary directory, so other blocks can import it. A module that defines
  tests (`def test_...`) is run with plain pytest, which must pass at least one test. A module
  that defines an ASGI `app` or `router` is served on real uvicorn, which must answer PING.
  Any other block is a script, run with the page's modules importable; it must exit 0.
  `<!-- serve: module:attr -->` first serves that app (a page module or a repository module)
  on real uvicorn on a free port, and every `127.0.0.1:PORT` in the block is rewritten to it.
- `bash`/`console`: each command runs from the repository root. Servers (uvicorn,
  `scripts/serve`, `python -m examples.app`, `observable-socket serve`) start in the
  background on free ports, each port number in the block mapped to a free one, and must
  answer PING before the next command runs (from a socket their own process listens on: a
  server that lost its port to another copy of the suite is started again on another);
  `observable-socket call` and scripts must exit 0; `listen` must still be running at the end.
  `pip install` lines are checked, not run: the extras they name must exist in pyproject.toml.
  `scripts/test` is this suite: it is checked to exist. `<!-- serve: ... -->` works as for
  python.
- `js`: checked by `node --check` (the JS client package is not installable here);
  `typescript`: parsed by the TypeScript compiler of tests/js.
- `nginx`: the page's server configuration, checked by `nginx -t` and then run in front of a
  real uvicorn with the Python client going through it over TLS.
- A `redis://127.0.0.1:PORT/DB` URL in a shell block gets a real redis-server of its own, on a
  unix socket in a private directory, and the URL is rewritten to that socket's `unix://` URL.
- Blocks that need redis-server, nginx, node or openssl are skipped with the package to install
  on a machine without them, and fail in CI (`CI` set), where `.ci/run` installs them.
- `json`: parsed. `text`: a file tree whose every path must exist in the repository.
- `<!-- partial -->` marks a deliberately incomplete block: python is compiled, shell is
  checked by `bash -n`; nothing else is accepted as partial.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import MS, TIMEOUT, free_socket
from tests.redis_servers import RedisServer
from tests.servers import owns_listener

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(`{3,})([\w-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(partial|serve:\s*[\w.]+:\w+)\s*-->$")
MODULE_HEADER = re.compile(r"^# ([\w]+)\.py\s*$")
PORT_IN_URL = re.compile(r"(?<=(?:127\.0\.0\.1|localhost):)(\d{2,5})\b")
PORT_OPTION = re.compile(r"(?:--port[ =]|PORT=|listen\s+(?:127\.0\.0\.1:)?)(\d{2,5})\b")
#: how long a snippet or a command may take; generous: the machine is shared
RUN_TIMEOUT = 30 * TIMEOUT


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: str = ""

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def module(self) -> str | None:
        first = self.code.splitlines()[0] if self.code else ""
        match = MODULE_HEADER.match(first)
        return match.group(1) if self.lang == "python" and match else None


def blocks_of(page: Path) -> list[Block]:
    """The page's fenced blocks, with the marker comment that precedes each, if any."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang = match.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(previous)
        found.append(
            Block(
                page,
                i + 1,
                lang,
                "\n".join(lines[i + 1 : end]) + "\n",
                marker.group(1) if marker else "",
            )
        )
        i = end + 1
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def test_every_page_has_blocks_and_module_names_are_unique() -> None:
    """The collector sees the pages; two modules of one page never share a name."""
    assert len(PAGES) > 5 and len(BLOCKS) > 20
    for page in PAGES:
        names = [b.module for b in BLOCKS if b.page == page and b.module]
        assert len(names) == len(set(names)), f"{page.name}: module names repeat: {names}"


# Servers and ports


@dataclass
class Ports:
    """Map each port number a block mentions to a free loopback port, the same one each time."""

    mapping: dict[str, int] = field(default_factory=dict)
    sockets: list[socket.socket] = field(default_factory=list)

    def bound(self, number: str) -> socket.socket:
        """A listening socket for `number`, for servers that accept `--fd`."""
        sock = free_socket()
        self.sockets.append(sock)
        self.mapping[number] = sock.getsockname()[1]
        return sock

    def port(self, number: str) -> int:
        if number not in self.mapping:
            self.repick(number)
        return self.mapping[number]

    def repick(self, number: str) -> int:
        """Map `number` to a port that was free a moment ago, for servers that cannot take a
        bound socket. Another copy of the suite may take it in between: whoever starts a server
        on it checks that the listener is its own (`owns_listener`) and repicks if not."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.mapping[number] = probe.getsockname()[1]
        return self.mapping[number]

    def rewrite(self, text: str) -> str:
        def swap(match: re.Match[str]) -> str:
            return match.group(0).replace(match.group(1), str(self.port(match.group(1))))

        return PORT_OPTION.sub(swap, PORT_IN_URL.sub(lambda m: str(self.port(m.group(1))), text))

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


async def _probe(url: str) -> str | int | None:
    """ "PONG", the close code of a server that refused the connection, or None (not up)."""
    try:
        async with connect(url, open_timeout=TIMEOUT) as ws:
            await ws.send('{"uuid": "docs", "route": "PING"}')
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            ok = answer.get("route") == "PONG" and answer.get("uuid") == "docs"
            return "PONG" if ok else f"not a PONG: {answer}"
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    except (TimeoutError, OSError):
        return None


def wait_for_pong(
    url: str,
    proc: subprocess.Popen[bytes] | None = None,
    refusal_ok: bool = False,
    port: int | None = None,
) -> bool:
    """Retry PING on `url` until it gets PONG; fail if the process exits or time runs out.

    With `refusal_ok`, a close 1008 (the app's `access_logic` refused an anonymous client)
    also shows that the app is served. With `port` (a server that bound a picked port itself),
    the PONG counts only once the socket listening on `port` belongs to `proc`'s process tree,
    and a process that exits saying the address is in use returns False: another copy of the
    suite took the port, so the caller starts the server again on another.
    """
    for _ in range(int(RUN_TIMEOUT / (100 * MS))):
        if proc is not None and proc.poll() is not None:
            text = output(proc)
            if port is not None and "in use" in text.lower():
                return False
            raise AssertionError(f"server exited with {proc.returncode}: {text}")
        result = asyncio.run(_probe(url))
        if result == "PONG" or (refusal_ok and result == 1008):
            if port is None or proc is None or owns_listener(proc.pid, port):
                return True
        else:
            assert not isinstance(result, str), result
        time.sleep(100 * MS)
    raise AssertionError(f"no PONG from {url}")


def output(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None or proc.stdout is None:
        return ""
    return proc.stdout.read().decode(errors="replace")[-3000:]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@dataclass
class Sandbox:
    """A temporary directory holding the page's modules, and the processes a block started."""

    directory: Path
    ports: Ports = field(default_factory=Ports)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: redis-servers a block's `redis://127.0.0.1:PORT/DB` URLs stand for, and their URLs
    redis: list[RedisServer] = field(default_factory=list)
    redis_urls: dict[str, str] = field(default_factory=dict)
    #: variables a block's `export NAME=value` lines set for its later commands
    exports: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        path = str(self.directory)
        venv_bin = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "PYTHONPATH": path,
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
            "EXAMPLES_DB_URL": f"sqlite+aiosqlite:///{self.directory / 'articles.db'}",
            **self.exports,
            **extra,
        }

    def start(
        self, args: list[str], cwd: Path, env: dict[str, str], fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            pass_fds=fds,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def serve(self, target: str, number: str = "8000", refusal_ok: bool = False) -> str:
        """Serve `module:attr` with uvicorn on the socket mapped from `number`; its ws URL."""
        sock = self.ports.bound(number)
        fd = sock.fileno()
        proc = self.start(
            [sys.executable, "-m", "uvicorn", target, "--fd", str(fd), "--log-level", "warning"],
            self.directory,
            self.env(),
            (fd,),
        )
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
        wait_for_pong(url, proc, refusal_ok)
        return url

    def run(self, args: list[str] | str, cwd: Path, shell: bool = False, **env: str) -> str:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=self.env(**env),
            shell=shell,
            capture_output=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        text = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 0, f"{args!r} exited {done.returncode}:\n{text[-3000:]}"
        return text

    def rewrite_redis(self, text: str) -> str:
        """Every redis URL the block names, as the `unix://` URL of its own redis-server."""
        # longest first: `redis://127.0.0.1:6379/0` before a bare `redis://127.0.0.1:6379`
        for documented in sorted(self.redis_urls, key=len, reverse=True):
            text = text.replace(documented, self.redis_urls[documented])
        return text

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        for server in self.redis:
            server.close()
        self.ports.close()


@pytest.fixture
def sandbox(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A stand-in for the clone's root: its entries linked, the page's modules beside them."""
    for entry in ROOT.iterdir():
        if entry.name not in (".git", "site") and not entry.name.endswith(".db"):
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    write_modules(request.node.callspec.params["block"], tmp_path)
    box = Sandbox(tmp_path)
    try:
        yield box
    finally:
        box.close()


def write_modules(block: Block, directory: Path, rewrite: Callable[[str], str] = str) -> None:
    """Write the page's modules; `rewrite` maps the ports they name to the sandbox's."""
    for other in BLOCKS:
        if other.page == block.page and other.module:
            (directory / f"{other.module}.py").write_text(rewrite(other.code), encoding="utf-8")


# Runners, by language


def serve_marked(block: Block, box: Sandbox) -> None:
    """Serve the app a `<!-- serve: module:attr -->` marker names, on the block's first port."""
    if block.marker.startswith("serve:"):
        numbers = PORT_IN_URL.findall(block.code) or ["8000"]
        box.serve(block.marker.split(":", 1)[1].strip(), numbers[0])


def run_python(block: Block, box: Sandbox) -> None:
    serve_marked(block, box)
    code = box.ports.rewrite(block.code)
    if block.module and re.search(r"^(async )?def test_", code, re.M):
        path = box.directory / f"test_{block.module}_docs.py"
        path.write_text(code, encoding="utf-8")
        text = box.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name],
            box.directory,
        )
        assert re.search(r"\b[1-9]\d* passed", text) and "failed" not in text, text
        return
    if block.module and re.search(r"^(app|router)\s*=", code, re.M):
        attr = "app" if re.search(r"^app\s*=", code, re.M) else "router"
        box.serve(f"{block.module}:{attr}", refusal_ok=True)
        return
    script = box.directory / "snippet.py"
    script.write_text(code, encoding="utf-8")
    box.run([sys.executable, script.name], box.directory)


SERVER = re.compile(
    r"(^|\s|/)(uvicorn|scripts/serve|observable-socket serve)\b|python -m examples\.app\b"
)


def shell_commands(block: Block) -> list[str]:
    """The block's commands: `$ ` lines of a console block, every line of a bash block."""
    commands = []
    for raw in block.code.splitlines():
        line = raw.strip()
        if block.lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        commands.append(re.sub(r"\s+#\s.*$", "", line))
    return commands


def check_pip_install(command: str) -> None:
    """A `pip install` line names only extras that exist in pyproject.toml."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for words in re.findall(r"\[([\w,\s-]+)\]", command):
        for extra in words.split(","):
            assert extra.strip() in extras, f"no extra {extra.strip()!r} in pyproject.toml"


def run_shell(block: Block, box: Sandbox) -> None:
    serve_marked(block, box)
    for documented in dict.fromkeys(REDIS_URL.findall(block.code)):
        start_redis(box, documented)
    listeners: list[subprocess.Popen[bytes]] = []
    for command in shell_commands(block):
        # a path under /tmp stays inside the sandbox: suites running at once do not share it
        command = command.replace("/tmp/", f"{box.directory}/tmp-")
        command = box.rewrite_redis(command)
        if re.match(r"(\S*/)?pip3? install |python3? -m pip install ", command):
            check_pip_install(command)
        elif re.match(r"cd |git clone |python3? -m venv ", command):
            pass  # setting up a clone: the sandbox stands for one already
        elif command in ("scripts/test", ".ci/run"):
            assert os.access(ROOT / command, os.X_OK), f"{command} is not executable"
        elif match := re.fullmatch(r"export (\w+)=(\S+)", command):
            box.exports[match.group(1)] = match.group(2).strip("'\"")
        elif SERVER.search(command):
            start_server(command, box)
        else:
            # the page's modules (a client script the block runs) talk to the mapped ports
            write_modules(block, box.directory, box.ports.rewrite)
            command = at_root(box.ports.rewrite(command))
            if " listen " in f" {command} ":
                listeners.append(box.start(["bash", "-c", command], box.directory, box.env()))
            else:
                box.run(command, box.directory, shell=True)
    for proc in listeners:
        assert proc.poll() is None, f"listen exited early: {output(proc)}"


def at_root(command: str) -> str:
    """Run the repository's scripts from the real root, never from the sandbox's links: a
    stale `scripts/install` would otherwise install the package from the temporary directory."""
    return re.sub(r"(^|\s)scripts/", lambda m: f"{m.group(1)}{ROOT}/scripts/", command)


def start_server(command: str, box: Sandbox) -> None:
    """Start a documented server command on a free port and wait for its PONG."""
    numbers = PORT_OPTION.findall(command) or ["8000"]
    if "uvicorn" in command and "--port" not in command:
        command += " --port 8000"
    if ("scripts/serve" in command or "examples.app" in command) and "PORT=" not in command:
        command = "PORT=8000 " + command
    if "--workers" in command:
        command = command.replace("--workers", "--timeout-graceful-shutdown 1 --workers")
    # These commands bind a port number themselves (scripts and `--workers` leave no room for
    # an inherited socket): the port is verified to be this server's, else picked again.
    for attempt in range(3):
        port = box.ports.repick(numbers[0]) if attempt else box.ports.port(numbers[0])
        line = at_root(box.ports.rewrite(command))
        proc = box.start(["bash", "-c", line], box.directory, box.env())
        # a 1008 counts too: an app whose access_logic refuses the anonymous probe is served
        # (the block's own commands then connect as a user)
        if wait_for_pong(f"ws://127.0.0.1:{port}/ws", proc, refusal_ok=True, port=port):
            return
    raise AssertionError(f"{command!r} found its port taken three times")


def need(tool: str, package: str) -> str:
    """The path of `tool`; skipped on a developer's machine without it, failed in CI."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        message = f"{tool} is needed for this block: apt-get install {package}"
        required = [v for k, v in os.environ.items() if k.startswith("OBSERVABLE_SOCKET_REQUIRE_")]
        if os.environ.get("CI") or "1" in required:
            pytest.fail(message)
        pytest.skip(message)
    return path


REDIS_URL = re.compile(r"redis://127\.0\.0\.1:\d+(?:/\d+)?")


def start_redis(box: Sandbox, documented: str) -> None:
    """A real redis-server of the block's own for the `documented` URL, on a unix socket in a
    private directory (see tests/redis_servers.py): a TCP port could be taken by another copy
    of the suite, whose Redis would then answer for this one."""
    server = RedisServer(need("redis-server", "redis-server"))
    box.redis.append(server)
    server.start()
    db = documented.rsplit("/", 1)[1] if documented.count("/") == 3 else "0"
    box.redis_urls[documented] = server.url.replace("?db=0", f"?db={db}")


def run_js(block: Block, box: Sandbox) -> None:
    node = need("node", "nodejs")
    path = box.directory / "snippet.mjs"
    path.write_text(block.code, encoding="utf-8")
    box.run([node, "--check", str(path)], box.directory)


def run_typescript(block: Block, box: Sandbox) -> None:
    """Parsed by the TypeScript compiler installed in tests/js (syntax only: the block may
    name types that the generated file declares elsewhere)."""
    from tests import npm

    npm.require(npm.TSC, "typescript")
    path = box.directory / "snippet.ts"
    path.write_text(block.code, encoding="utf-8")
    script = (
        "const ts = require(process.argv[1]);"
        "const src = require('fs').readFileSync(process.argv[2], 'utf8');"
        "const out = ts.transpileModule(src, {reportDiagnostics: true});"
        "for (const d of out.diagnostics)"
        " console.error(ts.flattenDiagnosticMessageText(d.messageText, ' '));"
        "process.exit(out.diagnostics.length ? 1 : 0);"
    )
    typescript = npm.JS / "node_modules" / "typescript"
    box.run([need("node", "nodejs"), "-e", script, str(typescript), str(path)], box.directory)


def run_text(block: Block, box: Sandbox) -> None:
    """A file tree: `dir/` lines open a directory, indented names below it must exist."""
    current = ROOT
    for raw in block.code.splitlines():
        name = raw.strip().split()[0] if raw.strip() else ""
        if not name:
            continue
        if not raw.startswith(" "):
            current = ROOT / name.rstrip("/")
            assert current.exists(), f"{name} does not exist"
        else:
            assert (current / name).exists(), f"{current.name}/{name} does not exist"


NGINX_MAIN = """daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    fastcgi_temp_path {dir}/nginx-fastcgi;
    uwsgi_temp_path {dir}/nginx-uwsgi;
    scgi_temp_path {dir}/nginx-scgi;
{config}
}}
"""


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    return cert, key


def run_nginx(block: Block, box: Sandbox) -> None:
    """The page's nginx configuration in front of the demo on uvicorn, with a real certificate
    made for the test; the Python client talks to the demo through it, over TLS."""
    nginx = need("nginx", "nginx")
    need("openssl", "openssl")
    upstream = box.serve("examples.app:app", "8000")
    cert, key = self_signed_certificate(box.directory)
    # nginx binds the port numbers itself: it must be seen holding its listener (another copy
    # of the suite may have taken the port in between), else it is started on other ports.
    for attempt in range(3):
        listen = box.ports.repick("443") if attempt else box.ports.port("443")
        plain = box.ports.repick("80") if attempt else box.ports.port("80")
        config = box.ports.rewrite(block.code)
        config = re.sub(r"listen\s+443\s+ssl", f"listen 127.0.0.1:{listen} ssl", config)
        config = re.sub(r"listen\s+80;", f"listen 127.0.0.1:{plain};", config)
        config = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", config)
        config = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", config)
        assert upstream.split("/")[2] in config, "the configuration does not proxy to the app"
        conf = box.directory / "nginx.conf"
        conf.write_text(NGINX_MAIN.format(dir=box.directory, config=config), encoding="utf-8")
        box.run([nginx, "-t", "-p", str(box.directory), "-c", str(conf)], box.directory)
        args = [nginx, "-p", str(box.directory), "-c", str(conf)]
        proc = box.start(args, box.directory, box.env())
        ports = [listen] + ([plain] if f"listen 127.0.0.1:{plain};" in config else [])
        if nginx_listening(proc, ports, box.directory / "nginx-error.log"):
            break
    else:
        raise AssertionError("nginx found its ports taken three times")
    context = ssl.create_default_context(cafile=str(cert))
    url = f"wss://127.0.0.1:{listen}/ws"
    asyncio.run(talk_through_proxy(url, context, proc))


def nginx_listening(proc: subprocess.Popen[bytes], ports: list[int], error_log: Path) -> bool:
    """True once nginx's own processes hold the listeners on `ports`; False if it exited
    because one was in use (taken by another copy of the suite)."""
    for _ in range(int(RUN_TIMEOUT / (100 * MS))):
        if proc.poll() is not None:
            text = output(proc)
            with contextlib.suppress(OSError):
                text += error_log.read_text(errors="replace")[-3000:]
            if "in use" in text.lower():
                return False
            raise AssertionError(f"nginx exited with {proc.returncode}: {text}")
        if all(owns_listener(proc.pid, port) for port in ports):
            return True
        time.sleep(100 * MS)
    raise AssertionError(f"nginx is not listening on {ports}")


async def talk_through_proxy(
    url: str, context: ssl.SSLContext, proc: subprocess.Popen[bytes]
) -> None:
    from observable_socket_asgi.client import ConnectFailed
    from observable_socket_asgi.client import connect as client_connect

    for _ in range(int(RUN_TIMEOUT / (100 * MS))):
        assert proc.poll() is None, f"nginx exited: {output(proc)}"
        try:
            sock = client_connect(url, ssl=context, timeout=TIMEOUT, reconnect=False)
            await sock.connect()
            break
        except ConnectFailed:
            await asyncio.sleep(100 * MS)
    else:
        raise AssertionError(f"no connection through nginx at {url}")
    async with sock:
        res = await sock.request("math/sum", [1, 2, 3, 4])
        assert res.payload == {"sum": 10}
        assert (await sock.request("clock/ticks", 2)).status == 202
        ticks = []
        async for push in sock.pushes():
            ticks.append(push.payload["n"])
            if len(ticks) == 2:
                break
        assert ticks == [1, 2]


def run_partial(block: Block, box: Sandbox) -> None:
    if block.lang == "python":
        compile(block.code, block.id, "exec")
    elif block.lang in ("bash", "console"):
        code = "\n".join(shell_commands(block))
        box.run(["bash", "-n", "-c", code], box.directory)
    else:
        raise AssertionError(f"a {block.lang or 'plain'} block cannot be marked partial")


RUNNERS = {
    "python": run_python,
    "bash": run_shell,
    "console": run_shell,
    "js": run_js,
    "typescript": run_typescript,
    "json": lambda block, box: orjson.loads(block.code),
    "text": run_text,
    "nginx": run_nginx,
}


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.id)
def test_code_block(block: Block, sandbox: Sandbox) -> None:
    """The block runs as the page says it does."""
    if block.marker == "partial":
        run_partial(block, sandbox)
        return
    runner = RUNNERS.get(block.lang)
    assert runner is not None, f"no runner for a {block.lang or 'plain'!r} block: label it"
    runner(block, sandbox)


def test_configuration_table_lists_every_keyword_with_its_default() -> None:
    """docs/configuration.md names each SocketRouter keyword once, with its real default."""
    from observable_socket_asgi import SocketRouter

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, re.M))
    parameters = inspect.signature(SocketRouter.__init__).parameters
    keywords = {name: p.default for name, p in parameters.items() if name != "self"}
    assert set(keywords) <= set(rows), f"missing from the table: {set(keywords) - set(rows)}"
    for name, default in keywords.items():
        assert ast.literal_eval(rows[name]) == default, (
            f"{name}: table {rows[name]}, code {default!r}"
        )
