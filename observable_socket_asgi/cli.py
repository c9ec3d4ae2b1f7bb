"""The command line: `call` a route, `listen` to pushes, `serve` a router with uvicorn,
print a router's `asyncapi` document or its `typescript` declarations, `top` to watch one.

Exit status: 0 for a 2xx answer (or a listen ended by Ctrl-C), 1 for any other status
(for `listen`, a `--call` answered with one), 2 for a usage error (bad JSON payload, bad
`-H`, an unknown option, a `top` URL that answers 4xx: not a metrics_url) or a missing extra,
3 when the connection is refused or closed, 4 when no answer arrives within `--timeout`.
`top --count N` exits 0 if its last scrape succeeded, else 3.

A payload is JSON text, or `-` to read it from stdin, or `@FILE` to read it from a file (a
large payload does not fit on a command line).

`call` prints the answer on stdout; `listen` prints one JSON line per push on stdout and
everything else (connected, the answers to its `--call`s, why it stopped) on stderr, so its
stdout can be piped as is.

`call` and `listen` need the `client` extra (websockets), `serve` the `uvicorn` extra; each
is imported only by the command that needs it, so one extra is enough for its commands.
`asyncapi` and `typescript` need no extra beyond what the router itself imports (`schema`
for typed routes); `top` needs the `metrics` extra (prometheus_client's parser).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any, Protocol, TextIO

from ._apps import import_app as _import_app
from ._apps import load_router as _load_router
from ._cli_args import (
    CallAction,
    PayloadAction,
    UsageError,
    positive,
    positive_int,
    read_payload,
)
from ._extras import DISTRIBUTION, install_command
from .envelope import PING, PONG, parse_json
from .errors import ConnectFailed, ConnectionClosed, RequestTimeout

__all__ = ["EXIT_CLOSED", "EXIT_NOT_OK", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_CLOSED = 3
EXIT_TIMEOUT = 4


class _Commands(Protocol):
    """The group `add_subparsers()` returns, as the command builders use it (argparse names
    its class privately)."""

    def add_parser(
        self, name: str, *, help: str | None = ..., description: str | None = ...
    ) -> argparse.ArgumentParser: ...

    @property
    def choices(self) -> Mapping[str, argparse.ArgumentParser]:
        """Each command's parser, by name."""
        ...


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (sys.argv[1:] by default); return the exit status."""
    args, unknown = _parser().parse_known_args(argv)
    if unknown:
        # the command's own usage, not the top-level one: the mistake is in its options
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "call":
            return asyncio.run(_call(args))
        if args.command == "listen":
            return asyncio.run(_listen(args))
        if args.command == "asyncapi":
            return _asyncapi(args)
        if args.command == "typescript":
            return _typescript(args)
        if args.command == "top":
            return _top(args)
        if args.command == "publish":
            return _publish(args)
        return _serve(args)
    except (UsageError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CLOSED
    except KeyboardInterrupt:
        return EXIT_OK if args.command != "call" else 130


def _root_parser() -> tuple[argparse.ArgumentParser, _Commands]:
    """The program's parser, and the group its commands are added to."""
    parser = argparse.ArgumentParser(
        prog="observable-socket",
        description="Talk to an ObservableSocket server, or serve a router.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {metadata.version(DISTRIBUTION)}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    return parser, commands


#: the first argument of the commands that read a router: what to import
_ROUTER = ("app", "module:attribute of the SocketRouter")


def _command(
    commands: _Commands, name: str, first: tuple[str, str], *, help: str, description: str
) -> argparse.ArgumentParser:
    """A command's parser with its first argument (`url` or `app`): what it talks to."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.add_argument(first[0], help=first[1])
    return parser


def _add_call(commands: _Commands) -> None:
    """`call URL ROUTE [PAYLOAD]`: one request, its answer printed."""
    call = _command(
        commands,
        "call",
        ("url", "ws:// or wss:// URL"),
        help="send one request and print its answer as JSON",
        description="Send one request and print its answer. Exit status: 0 for 2xx, 1 for "
        "another status, 2 for a usage error, 3 if the connection is refused or closed, "
        "4 on timeout.",
    )
    call.add_argument("route", help="route name, e.g. math/sum")
    call.add_argument(
        "payload",
        nargs="?",
        default="null",
        help="JSON payload, - to read it from stdin, or @FILE to read it from a file "
        "(default null)",
    )
    _common(call)
    call.add_argument("--timeout", type=positive, default=10.0, help="seconds to wait (default 10)")


def _add_listen(commands: _Commands) -> None:
    """`listen URL [--call ROUTE [--payload JSON]]...`: pushes printed as JSON lines."""
    listen = _command(
        commands,
        "listen",
        ("url", "ws:// or wss:// URL"),
        help="print pushes as JSON lines until interrupted",
        description="Print every push as one JSON line, reconnecting when allowed, until "
        "Ctrl-C. On every connection it first makes the --call requests, in order (to "
        "subscribe to something), then says on stderr that it is listening.",
    )
    listen.add_argument(
        "--call",
        dest="calls",
        action=CallAction,
        metavar="ROUTE",
        help="a request to make on every connection before listening (repeatable)",
    )
    listen.add_argument(
        "--payload",
        action=PayloadAction,
        metavar="JSON",
        help="the JSON payload of the --call before it, or - (stdin) or @FILE (default null)",
    )
    _common(listen)
    listen.add_argument(
        "--timeout", type=positive, default=10.0, help="seconds each --call may take (default 10)"
    )


def _add_serve(commands: _Commands) -> None:
    """`serve MODULE:ATTRIBUTE`: the router under uvicorn."""
    serve = _command(
        commands,
        "serve",
        ("app", "module:attribute of the SocketRouter (or any ASGI app)"),
        help="run a router with uvicorn",
        description="Import module:attribute from the working directory (as `uvicorn "
        "module:app` does) and serve it with uvicorn, the router's log lines and uvicorn's "
        "in one format. Ctrl-C stops it gracefully. Needs the uvicorn extra.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=8000, help="port to bind (default 8000; 0: a free one)"
    )
    serve.add_argument("--reload", action="store_true", help="restart when code changes")
    serve.add_argument(
        "--log-level", default="info", help="for uvicorn and the router (default info)"
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines with time and level, or one JSON object per line (default text)",
    )
    serve.add_argument(
        "--ws-max-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="the largest WebSocket message uvicorn reads (default: twice the router's "
        "max_message_bytes; larger messages are closed 1009 by uvicorn before the router "
        "sees them, smaller ones over the limit are answered 413)",
    )


def _add_asyncapi(commands: _Commands) -> None:
    """`asyncapi MODULE:ATTRIBUTE`: the router's AsyncAPI document."""
    asyncapi = _command(
        commands,
        "asyncapi",
        _ROUTER,
        help="print a router's AsyncAPI 3.0 document as JSON",
        description="Import module:attribute (a SocketRouter) and print its AsyncAPI 3.0 "
        "document: every route, its payload and response types and error answers, and the "
        "declared push topics.",
    )
    asyncapi.add_argument("--title", default="ObservableSocket API", help="info.title")
    asyncapi.add_argument("--api-version", default="0.1.0", help="info.version (default 0.1.0)")
    asyncapi.add_argument("--address", default=None, help="the socket's path, e.g. /ws")
    asyncapi.add_argument("-o", "--output", default=None, help="write to this file")


def _add_typescript(commands: _Commands) -> None:
    """`typescript MODULE:ATTRIBUTE`: the router's TypeScript declarations."""
    typescript = _command(
        commands,
        "typescript",
        _ROUTER,
        help="print TypeScript declarations of a router's payload types",
        description="Import module:attribute (a SocketRouter) and print TypeScript "
        "declarations: an interface per model, and the Routes and Topics maps.",
    )
    typescript.add_argument("-o", "--output", default=None, help="write to this file")


def _parser() -> argparse.ArgumentParser:
    """The whole command line: every command's parser, `top` last."""
    parser, commands = _root_parser()
    for add in (_add_call, _add_listen, _add_serve, _add_asyncapi, _add_typescript):
        add(commands)
    top = _command(
        commands,
        "top",
        ("url", "http:// URL of the router's metrics_url"),
        help="a live view of a router's metrics",
        description="Scrape a router's metrics_url every interval and show connections, "
        "requests per second and p50/p99 per route, in-flight, queued pushes and the "
        "backplane. Needs prometheus_client (the metrics extra).",
    )
    top.add_argument(
        "--interval", type=positive, default=1.0, help="seconds between screens (default 1)"
    )
    top.add_argument(
        "--count",
        type=positive_int,
        default=None,
        help="stop after this many screens (default: until Ctrl-C)",
    )
    top.add_argument("--timeout", type=positive, default=5.0, help="seconds per scrape (default 5)")
    _add_publish(commands)
    for command in commands.choices.values():
        # main() reports a mistyped option with the usage of the command it was given to
        command.set_defaults(command_parser=command)
    return parser


def _add_publish(commands: Any) -> None:
    """`publish BACKPLANE_URL TOPIC [PAYLOAD_JSON | -]`: a push to every worker, no server."""
    publish = commands.add_parser(
        "publish",
        help="publish a push to every worker sharing a Redis backplane",
        description="Publish one push on TOPIC to the subscribers of every worker whose "
        "backplane is BACKPLANE_URL (redis://, unix://, redis+sentinel://, redis+cluster://). "
        "Exit status: 0 when Redis took it, 2 for a usage error (bad JSON, bad URL, no redis "
        "extra), 3 when Redis did not take it.",
    )
    publish.add_argument("backplane_url", metavar="BACKPLANE_URL", help="the workers' Redis URL")
    publish.add_argument("topic", metavar="TOPIC", help="the topic, e.g. room:lobby")
    publish.add_argument(
        "payload", nargs="?", default="null", help="JSON payload, or - to read it from stdin"
    )
    publish.add_argument("--prefix", default="observable_socket:", help="the workers' prefix")
    publish.add_argument(
        "--history-size", type=int, default=0, help="the workers' history_size (default 0)"
    )
    publish.add_argument(
        "--history-ttl", type=float, default=300.0, help="the workers' history_ttl (default 300)"
    )
    publish.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")


def _publish(args: argparse.Namespace) -> int:
    payload = read_payload(args.payload, "PAYLOAD_JSON")
    from .pubsub.publisher import Publisher, PublishFailed

    try:
        with Publisher(
            args.backplane_url,
            prefix=args.prefix,
            history_size=args.history_size,
            history_ttl=args.history_ttl,
            timeout=args.timeout,
        ) as publisher:
            publisher.publish(args.topic, payload)
    except PublishFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CLOSED
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a message header merged into every message (repeatable)",
    )
    parser.add_argument(
        "--handshake-header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an HTTP header of the WebSocket handshake (repeatable)",
    )


def _pairs(items: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"headers": _pairs(args.header, "-H")}
    handshake = _pairs(args.handshake_header, "--handshake-header")
    if handshake:
        options["additional_headers"] = handshake
    return options


def _dump(obj: Any, out: TextIO, pretty: bool) -> None:
    out.write(json.dumps(obj, indent=2 if pretty else None, ensure_ascii=False) + "\n")
    out.flush()


async def _call(args: argparse.Namespace) -> int:
    payload = read_payload(args.payload, "the payload")
    options = _options(args)
    from .client._client import connect

    async with connect(
        args.url, reconnect=False, heartbeat_interval=None, timeout=args.timeout, **options
    ) as sock:
        try:
            res = await sock.request(args.route, payload)
        except RequestTimeout as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_TIMEOUT
        except ConnectionClosed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CLOSED
    answer = res.to_dict()
    if args.route == PING:
        # the heartbeat's answer is the PONG frame: show it as the server sent it
        answer = {"uuid": res.uuid, "route": PONG, **answer}
    _dump(answer, sys.stdout, sys.stdout.isatty())
    return EXIT_OK if res.ok else EXIT_NOT_OK


async def _listen(args: argparse.Namespace) -> int:
    options = _options(args)
    calls: list[tuple[str, Any]] = [
        (route, None if payload is None else parse_json(payload))
        for route, payload in args.calls or []
    ]
    from .client._client import Client, connect

    # why listening stopped when a --call failed (the exit status is then 1)
    failed: list[str] = []
    opened = 0

    async def on_open(sock: Client) -> None:
        nonlocal opened
        opened += 1
        for route, payload in calls:
            try:
                res = await sock.request(route, payload)
            except (RequestTimeout, ConnectionClosed) as exc:
                # a connection lost meanwhile: the next on_open makes the calls again
                print(f"error: --call {route}: {exc}", file=sys.stderr, flush=True)
                return
            line = json.dumps(res.to_dict(), ensure_ascii=False)
            print(f"called {route}: {line}", file=sys.stderr, flush=True)
            if not res.ok:
                failed.append(f"--call {route} was answered {res.status}")
                await sock.close()
                return
        again = "re" if opened > 1 else ""
        print(
            f"{again}connected to {args.url}; listening for pushes (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )

    async with connect(args.url, on_open=on_open, timeout=args.timeout, **options) as sock:
        async for push in sock.pushes():
            _dump(push.to_dict(), sys.stdout, False)
        if failed:
            print(f"error: {failed[0]}", file=sys.stderr)
            return EXIT_NOT_OK
        print(
            f"error: connection closed (code {sock.close_code}, {sock.close_reason!r})",
            file=sys.stderr,
        )
    return EXIT_CLOSED


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(output, "w", encoding="utf-8") as file:
        file.write(text)


def _asyncapi(args: argparse.Namespace) -> int:
    router = _load_router(args.app)
    document = router.asyncapi(title=args.title, version=args.api_version, address=args.address)
    _write(json.dumps(document, indent=2, ensure_ascii=False) + "\n", args.output)
    return EXIT_OK


def _typescript(args: argparse.Namespace) -> int:
    _write(_load_router(args.app).typescript(), args.output)
    return EXIT_OK


def _top(args: argparse.Namespace) -> int:
    import time
    import urllib.error
    import urllib.request

    from .observe import _top

    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"expected an http:// or https:// URL, got {args.url!r}")
    try:
        import prometheus_client.parser  # noqa: F401 - _top.parse reads the text with it
    except ImportError as exc:
        raise ImportError(
            f"top needs prometheus_client; install the extra: {install_command('metrics')}"
        ) from exc
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    previous: _top.Snapshot | None = None
    shown = 0
    ok = False
    while args.count is None or shown < args.count:
        if shown:
            time.sleep(args.interval)
        try:
            with urllib.request.urlopen(args.url, timeout=args.timeout) as answer:
                text = answer.read().decode("utf-8")
            current = _top.parse(text, time.monotonic())
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                # the same answer on every scrape: say it once, with what to do
                raise UsageError(_not_metrics(args.url, exc.code, exc.reason)) from None
            screen = f"observable-socket top  {args.url}\ncannot read the metrics: {exc}\n"
            ok = False
        except (OSError, ValueError) as exc:
            screen = f"observable-socket top  {args.url}\ncannot read the metrics: {exc}\n"
            ok = False
        else:
            screen = _top.render(previous, current, args.url)
            previous = current
            ok = True
        sys.stdout.write(clear + screen + ("" if clear else "\n"))
        sys.stdout.flush()
        shown += 1
    return EXIT_OK if ok else EXIT_CLOSED


def _not_metrics(url: str, code: int, reason: str) -> str:
    """Why a scrape answered `code` is no metrics page, and what to point `top` at."""
    if code == 426:
        return (
            f"{url} answered 426 Upgrade Required: that path serves the WebSocket, not "
            'metrics. Serve them with SocketRouter(metrics_url="/metrics") (the metrics '
            "extra) and give top that URL."
        )
    return f"{url} answered {code} {reason}: not the router's metrics_url"


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(
            f"serve needs uvicorn; install the extra: {install_command('uvicorn')}"
        ) from exc

    if ":" not in args.app:
        raise UsageError(f"expected module:attribute, got {args.app!r}")
    # `uvicorn module:app` imports from the working directory; do the same for the script.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from .logs import logging_config

    ws_max_size = args.ws_max_size
    if ws_max_size is None:
        ws_max_size = ws_max_size_for(_import_app(args.app))
    options: dict[str, Any] = {} if ws_max_size is None else {"ws_max_size": ws_max_size}
    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        reload=args.reload,
        log_level=args.log_level,
        # uvicorn's lines and the router's in one format, with time and level
        log_config=logging_config(args.log_level, format=args.log_format),
        **options,
    )
    return EXIT_OK


def ws_max_size_for(app: Any) -> int | None:
    """uvicorn's `ws_max_size` for `app`: twice a router's `max_message_bytes`, else None.

    uvicorn reads a whole message before the router sees it, up to `ws_max_size` (16 MiB by
    default), so that setting, not the router's limit, bounds what one message can cost.
    Twice the limit keeps a polite 413 (with the request's uuid) for messages somewhat over
    it, and lets uvicorn close with 1009 anything larger.
    """
    from .server.routing import SocketRouter

    if isinstance(app, SocketRouter) and app.settings.max_message_bytes is not None:
        return 2 * app.settings.max_message_bytes
    return None
