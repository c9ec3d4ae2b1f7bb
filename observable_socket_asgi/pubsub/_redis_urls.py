"""Where Redis is: a single server, a Sentinel-watched master, or a Cluster, read from a URL.

The forms (python-socketio's, so one URL serves both libraries):

    redis://[[user]:password@]host[:port][/db]      one server (also rediss://, unix://)
    redis+sentinel://[[user]:password@]host:port[,host:port...][/db[/service]]
                                                    the master the sentinels name `service`
                                                    (default "mymaster"); redis-py asks them
                                                    again after a failover
    redis+cluster://[[user]:password@]host:port[,host:port...]
                                                    a Redis Cluster (7 or newer: sharded
                                                    pub/sub); any reachable node is enough

Parsing is pure (`parse`); `sync_client` and `async_client` import redis-py when called, so
importing this module needs no extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

__all__ = ["RedisTarget", "aclose_client", "async_client", "close_client", "parse", "sync_client"]

#: the service name a sentinel URL without one stands for (python-socketio's default)
DEFAULT_SERVICE = "mymaster"

Kind = Literal["single", "sentinel", "cluster"]


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Redis URL.

    Attributes:
        kind: "single", "sentinel" or "cluster".
        url: the URL as given (a single server's is handed to redis-py as is).
        nodes: the sentinels' or the cluster's seed nodes, `(host, port)`; empty for single.
        db: the database number (sentinel; a cluster has only 0).
        service: the master's name for the sentinels.
        username: from the URL, for the data nodes (and the sentinels).
        password: from the URL, for the data nodes (and the sentinels).
    """

    kind: Kind
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    db: int = 0
    service: str = DEFAULT_SERVICE
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def cluster(self) -> bool:
        """True for a Redis Cluster: sharded pub/sub and hash-tagged keys."""
        return self.kind == "cluster"


def parse(url: str) -> RedisTarget:
    """Read `url` as one of the three forms.

    Raises:
        ValueError: a sentinel or cluster URL without nodes, or with a malformed one.
    """
    if not isinstance(url, str):
        raise TypeError(f"a Redis URL must be a string, got {type(url).__name__}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis+sentinel", "redis+cluster"):
        return RedisTarget("single", url)
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    nodes = tuple(_node(item, url) for item in netloc.split(",") if item)
    if not nodes:
        raise ValueError(f"{url!r} names no host:port")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if scheme == "redis+cluster":
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"a Redis Cluster has only database 0, got {url!r}")
        return RedisTarget("cluster", url, nodes, username=username, password=password)
    path = [p for p in parts.path.split("/") if p]
    try:
        db = int(path[0]) if path else 0
    except ValueError:
        raise ValueError(f"the database in {url!r} must be a number") from None
    service = unquote(path[1]) if len(path) > 1 else DEFAULT_SERVICE
    return RedisTarget("sentinel", url, nodes, db, service, username, password)


def _node(item: str, url: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port in {url!r}, got {item!r}")
    return host.strip("[]"), int(port)


def _auth(target: RedisTarget) -> dict[str, Any]:
    auth: dict[str, Any] = {}
    if target.username is not None:
        auth["username"] = target.username
    if target.password is not None:
        auth["password"] = target.password
    return auth


def sync_client(target: RedisTarget, **options: Any) -> Any:
    """A redis-py client (`redis.Redis` or `redis.cluster.RedisCluster`) for `target`.

    `options` go to every connection (timeouts, retry); a sentinel client asks the
    sentinels for the master on every new connection, so it follows a failover.
    """
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    from redis.sentinel import Sentinel

    if target.kind == "single":
        return redis.Redis.from_url(target.url, **options)
    auth = _auth(target)
    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes, **auth, **options)
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs={**auth, **_timeouts(options)})
    return sentinel.master_for(target.service, db=target.db, **auth, **options)


def async_client(target: RedisTarget, **options: Any) -> Any:
    """As `sync_client`, with redis-py's asyncio clients."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.sentinel import Sentinel

    if target.kind == "single":
        return aioredis.Redis.from_url(target.url, **options)
    auth = _auth(target)
    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.nodes]
        return RedisCluster(startup_nodes=nodes, **auth, **options)
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs={**auth, **_timeouts(options)})
    return sentinel.master_for(target.service, db=target.db, **auth, **options)


def _sentinels(client: Any) -> list[Any]:
    """The clients of the sentinels a master's client asks (none for other clients)."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


def close_client(client: Any) -> None:
    """Close a `sync_client` and, for a sentinel one, its connections to the sentinels."""
    client.close()
    for sentinel in _sentinels(client):
        sentinel.close()


async def aclose_client(client: Any) -> None:
    """Close an `async_client` and, for a sentinel one, its connections to the sentinels."""
    await client.aclose()
    for sentinel in _sentinels(client):
        await sentinel.aclose()


def _timeouts(options: dict[str, Any]) -> dict[str, Any]:
    """The timeouts of `options`, for the connections to the sentinels too."""
    return {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
