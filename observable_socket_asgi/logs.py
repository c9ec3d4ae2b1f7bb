"""Logging for operators: one format, with level and time, for the library and uvicorn.

The library logs under `observable_socket_asgi` (one logger per module) and never configures
logging itself. Its records about a request or a connection carry context as `extra`
attributes, so any formatter can pick them up:

    `route`   the route name (a request, a failed `send()`)
    `uuid`    the request's uuid
    `client`  the peer's address, `"host:port"` (refusals, connection events, requests)

`logging_config()` returns a `logging.config.dictConfig` dict that gives the library's
loggers and uvicorn's the same handler and format (time, level, logger, message, and the
context fields), as text or as one JSON object per line. `observable-socket serve` uses it;
pass it to `uvicorn.run(..., log_config=logging_config())` or write it to a JSON file for
`uvicorn --log-config`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "TextFormatter", "logging_config", "peer"]

#: the `extra` attributes the library sets on its records, in the order they are shown
CONTEXT_FIELDS = ("route", "uuid", "client")

# What every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def peer(client: Sequence[Any] | None) -> str:
    """A scope's `client` (`(host, port)` or None) as log lines show it: `"host:port"`."""
    if not client:
        return "unknown"
    host = str(client[0])
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{client[1]}" if len(client) > 1 else host


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, then `route=... uuid=... client=...` when the record has them.

    Args:
        fmt, datefmt: as `logging.Formatter`'s; the defaults give ISO-like local time.
    """

    def __init__(
        self,
        fmt: str = "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt: str | None = None,
    ) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if hasattr(record, key)
        )
        if not context:
            return text
        # after the message's first line, so a traceback stays below it
        first, sep, rest = text.partition("\n")
        return f"{first} [{context}]{sep}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time`, `level`, `logger`, `message`, every `extra` field,
    and `exc_info` (the formatted traceback) when there is one.

    Values that are not JSON (an address tuple, an enum) are written with `str()`.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(
    level: str | int = "INFO", *, format: Literal["text", "json"] = "text"
) -> dict[str, Any]:
    """A `dictConfig` dict: the library's and uvicorn's loggers on one stderr handler.

    Args:
        level: the level of the library's loggers and uvicorn's (`"INFO"`, `"DEBUG"`...).
        format: `"text"` (`TextFormatter`) or `"json"` (`JsonFormatter`, one object a line).

    Returns:
        A dict for `logging.config.dictConfig`, or `uvicorn.run(log_config=...)`. Other
        loggers are left as they are (`disable_existing_loggers` is false).

    Raises:
        ValueError: an unknown format.
    """
    if format not in ("text", "json"):
        raise ValueError(f"format must be 'text' or 'json', got {format!r}")
    if isinstance(level, str):
        level = level.upper()
    formatter = TextFormatter if format == "text" else JsonFormatter
    logger = {"handlers": ["default"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "observable_socket_asgi": logger,
            "uvicorn": logger,
            "uvicorn.error": {"level": level},  # propagates to "uvicorn"
            "uvicorn.access": logger,
        },
    }
