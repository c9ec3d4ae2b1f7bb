"""The command line's argument types: seconds and counts above zero, payloads given as JSON
text, `-` (stdin) or `@FILE`, and the `listen` command's `--call`/`--payload` pairs.

A payload is read as the router reads a frame (`envelope.parse_json`): integers of any size
exactly, and what JSON cannot carry (`NaN`, `1e400`) refused with a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .envelope import parse_json
from .errors import ProtocolError

__all__ = [
    "CallAction",
    "PayloadAction",
    "UsageError",
    "read_payload",
    "positive",
    "positive_int",
]


class UsageError(Exception):
    pass


def positive(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a count above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return value


def payload_text(spec: str) -> tuple[str, str]:
    """The JSON text a payload argument stands for, and where it came from: `-` reads
    stdin, `@FILE` a file, anything else is the JSON itself."""
    if spec == "-":
        return sys.stdin.read(), "stdin"
    if spec.startswith("@"):
        try:
            with open(spec[1:], encoding="utf-8") as file:
                return file.read(), spec[1:]
        except OSError as exc:
            raise UsageError(f"cannot read the payload file: {exc}") from None
    return spec, "the argument"


def read_payload(spec: str, what: str) -> Any:
    """The payload `spec` stands for, decoded; a usage error when it is not JSON."""
    text, source = payload_text(spec)
    try:
        return parse_json(text)
    except ProtocolError as exc:
        raise UsageError(f"{what} ({source}): {exc}") from None


class Action(argparse.Action):
    """An option that files its value itself: argparse's hook, typed once for both below."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        self.take(parser, namespace, values)

    def take(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any
    ) -> None:
        """File `values` in `namespace`; report a mistake with `parser.error`."""
        raise NotImplementedError


class CallAction(Action):
    """`--call ROUTE`: a request `listen` makes on every connection, in order."""

    def take(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any
    ) -> None:
        calls: list[list[Any]] = list(getattr(namespace, self.dest) or [])
        calls.append([values, None])
        setattr(namespace, self.dest, calls)


class PayloadAction(Action):
    """`--payload JSON`: the payload of the `--call` just before it."""

    def take(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any
    ) -> None:
        calls = getattr(namespace, "calls", None)
        if not calls or calls[-1][1] is not None:
            parser.error("--payload must follow the --call it belongs to (one per --call)")
        try:
            # checked now, kept as JSON text
            calls[-1][1] = json.dumps(read_payload(values, "--payload"))
        except UsageError as exc:
            parser.error(str(exc))
