"""Throwaway Redis topologies for one test: a three-master cluster, and a master with a
replica watched by three sentinels.

Both need TCP (cluster nodes and sentinels tell each other their addresses), so unlike
`redis_servers.RedisServer` they listen on loopback ports. A port picked as free can be
taken by another copy of the suite before redis-server binds it: a server that cannot bind
exits at once, and then the whole topology is started again on fresh ports (a few times),
so two copies never share a node. Every file (configs, logs, nodes.conf) lives in a private
temporary directory; everything is bounded by `START_TIMEOUT` and torn down by `close()`,
which the fixtures call whatever happens.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import MS, PROCESS_TIMEOUT, pause

#: how long a whole topology may take to be ready (a cluster needs a few seconds to agree)
START_TIMEOUT = 30_000 * MS
#: how many times a topology is started again on fresh ports after losing a port race
ATTEMPTS = 4
#: the name the sentinels know the master by
SERVICE = "mymaster"


class PortTaken(RuntimeError):
    """A server exited before answering: most likely another process took its port."""


def free_port() -> int:
    """A loopback port nobody listens on right now (it may be taken before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_version(executable: str) -> tuple[int, ...]:
    """The version of `executable`, from `redis-server --version` (`v=7.0.15`)."""
    out = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, timeout=PROCESS_TIMEOUT
    ).stdout
    text = out.split("v=", 1)[1].split()[0]
    return tuple(int(part) for part in text.split("."))


def client(port: int) -> Any:
    """A sync redis-py client on a loopback port that fails fast rather than hang."""
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0, socket_connect_timeout=1.0)


def _pings(port: int) -> bool:
    return bool(client(port).ping())


def wait_for(check: Callable[[], bool], what: str, procs: list[subprocess.Popen[bytes]]) -> None:
    """Poll `check` until it holds; raise PortTaken if a server exited meanwhile."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if any(proc.poll() is not None for proc in procs):
            raise PortTaken(what)
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        pause(50 * MS)


class _Topology:
    """Processes started in a private directory, all killed and reaped by `close()`."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.directory = Path(tempfile.mkdtemp(prefix="redis-topology-"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, port: int, args: list[str]) -> subprocess.Popen[bytes]:
        """Start redis-server with `args` for the server on `port`; its log is `<port>.log`."""
        with (self.directory / f"{port}.log").open("ab") as log:
            proc = subprocess.Popen([self.executable, *args], stdout=log, stderr=subprocess.STDOUT)
        self.procs[port] = proc
        return proc

    def kill(self, port: int) -> None:
        """Kill the server on `port` at once (SIGKILL: no goodbye), and reap it."""
        proc = self.procs.pop(port, None)
        if proc is not None:
            proc.kill()
            proc.wait(PROCESS_TIMEOUT)

    def close(self) -> None:
        """Kill every server and remove the directory."""
        for port in list(self.procs):
            self.kill(port)
        shutil.rmtree(self.directory, ignore_errors=True)

    def logs(self) -> str:
        """The tail of every log, for a failure message."""
        return "\n".join(
            f"--- {path.name}\n" + path.read_text(errors="replace")[-1500:]
            for path in sorted(self.directory.glob("*.log"))
        )

    def start(self) -> None:
        """Start every process and return once the topology serves."""
        raise NotImplementedError

    def server_args(self, port: int) -> list[str]:
        folder = self.directory / str(port)
        folder.mkdir(exist_ok=True)
        return [
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip


class RedisCluster(_Topology):
    """Three masters, no replicas, every slot assigned; `url` is `redis+cluster://...`."""

    def __init__(self, executable: str, masters: int = 3) -> None:
        super().__init__(executable)
        self.ports = [free_port() for _ in range(masters)]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        procs = [
            self.spawn(
                port,
                [
                    *self.server_args(port),
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
                    "--cluster-node-timeout", "2000",
                    "--cluster-port", str(free_port()),
                ],
            )
            for port in self.ports
        ]  # fmt: skip
        for port in self.ports:
            wait_for(functools.partial(_pings, port), f"cluster node {port}", procs)
        create = subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster", "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )  # fmt: skip
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout}")
        for port in self.ports:
            wait_for(functools.partial(self._ok, port), f"cluster_state:ok on {port}", procs)

    def _ok(self, port: int) -> bool:
        info = client(port).execute_command("CLUSTER", "INFO").decode()
        if "cluster_state:ok" not in info:
            return False
        # every node must know every other one, or a client may be sent to a stranger
        nodes = client(port).execute_command("CLUSTER", "NODES").decode()
        return sum(1 for line in nodes.splitlines() if "master" in line) == len(self.ports)

    def owner(self, slot: int) -> int:
        """The port of the master that owns `slot`."""
        for start, end, master, *_ in client(self.ports[0]).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise LookupError(f"slot {slot} has no owner")

    def move_slot(self, slot: int, to: int) -> None:
        """Move `slot` and its keys to the master on port `to` (Redis's resharding steps)."""
        ids = {}
        for line in client(self.ports[0]).execute_command("CLUSTER", "NODES").decode().splitlines():
            node_id, address = line.split()[:2]
            ids[int(address.split(":")[1].split("@")[0])] = node_id
        source = self.owner(slot)
        client(to).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        client(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to])
        while keys := client(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            client(source).execute_command("MIGRATE", "127.0.0.1", to, "", 0, 5000, "KEYS", *keys)
        for port in self.ports:
            client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to])


class RedisSentinels(_Topology):
    """A master, one replica, three sentinels (quorum 2) that fail over within seconds.

    `url` is `redis+sentinel://S1,S2,S3/0/mymaster`; `kill_master()` kills the current
    master, and the sentinels promote the replica after `down-after-milliseconds`.
    """

    def __init__(self, executable: str) -> None:
        super().__init__(executable)
        self.master, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]
        self.url = (
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
            + f"/0/{SERVICE}"
        )

    def start(self) -> None:
        procs = [
            self.spawn(self.master, self.server_args(self.master)),
            self.spawn(
                self.replica,
                [*self.server_args(self.replica), "--replicaof", "127.0.0.1", str(self.master)],
            ),
        ]
        for port in self.sentinels:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            procs.append(self.spawn(port, [str(config), "--sentinel"]))
        wait_for(self._replicating, "the replica in sync", procs)
        for port in self.sentinels:
            wait_for(functools.partial(self._sees_all, port), f"sentinel {port} ready", procs)

    def _replicating(self) -> bool:
        info = client(self.replica).info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sees_all(self, port: int) -> bool:
        sentinel = client(port)
        replicas = sentinel.execute_command("SENTINEL", "REPLICAS", SERVICE)
        others = sentinel.execute_command("SENTINEL", "SENTINELS", SERVICE)
        return len(replicas) == 1 and len(others) == len(self.sentinels) - 1

    def current_master(self) -> int:
        """The port the sentinels now name as master."""
        _host, port = client(self.sentinels[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
        )
        return int(port)

    def kill_master(self) -> int:
        """Kill the current master; return its port."""
        port = self.current_master()
        self.kill(port)
        return port


def _executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("OBSERVABLE_SOCKET_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is required here (OBSERVABLE_SOCKET_REQUIRE_REDIS=1)")
        pytest.skip("redis-server not found: apt-get install redis-server")
    return executable


def started(make: Callable[[str], _Topology]) -> _Topology:
    """Start a topology, on fresh ports again when it lost a port race; raise otherwise."""
    executable = _executable()
    for attempt in range(ATTEMPTS):
        topology = make(executable)
        try:
            topology.start()
            return topology
        except PortTaken:
            topology.close()
            if attempt == ATTEMPTS - 1:
                raise
        except BaseException as exc:
            logs = topology.logs()
            topology.close()
            raise RuntimeError(f"{exc}\n{logs}") from exc
    raise AssertionError("unreachable")


@pytest.fixture
def redis_cluster() -> Iterator[RedisCluster]:
    """A real three-master Redis Cluster (Redis 7 or newer: sharded pub/sub) for one test."""
    executable = _executable()
    if redis_version(executable) < (7,):
        pytest.fail(f"Redis Cluster tests need redis-server 7 or newer, not {executable}")
    cluster = started(RedisCluster)
    assert isinstance(cluster, RedisCluster)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_sentinels() -> Iterator[RedisSentinels]:
    """A real master, replica and three sentinels for one test."""
    sentinels = started(RedisSentinels)
    assert isinstance(sentinels, RedisSentinels)
    try:
        yield sentinels
    finally:
        sentinels.close()
