"""The logging set-up: formatters that show the records' context, and the dictConfig."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator

import pytest

from observable_socket_asgi import logging_config
from observable_socket_asgi.logs import JsonFormatter, TextFormatter

NAMES = ("observable_socket_asgi", "uvicorn", "uvicorn.error", "uvicorn.access")


def record(msg: str = "route %r failed", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "observable_socket_asgi.pipeline", logging.ERROR, __file__, 1, msg, args or ("x",), None
    )
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the loggers a dictConfig touches back as they were (caplog needs propagation)."""
    saved = {}
    for name in NAMES:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def test_text_formatter_shows_time_level_and_context() -> None:
    """Time, level, logger and message, then the context fields the record carries."""
    line = TextFormatter().format(record(route="math/sum", uuid="u-1", client="10.0.0.1:5"))
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR   ", line), line
    assert line.endswith(
        "observable_socket_asgi.pipeline: route 'x' failed "
        "[route=math/sum uuid=u-1 client=10.0.0.1:5]"
    )
    assert "[" not in TextFormatter().format(record())  # no context, no brackets


def test_text_formatter_keeps_the_traceback_below_the_context() -> None:
    """With exc_info the context stays on the first line, the traceback under it."""
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record(route="r")
        rec.exc_info = __import__("sys").exc_info()
    first, _, rest = TextFormatter().format(rec).partition("\n")
    assert first.endswith("[route=r]")
    assert rest.startswith("Traceback") and rest.endswith("ValueError: boom")


def test_json_formatter_writes_every_extra_field() -> None:
    """One JSON object: time, level, logger, message, every extra field, the traceback."""
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record(route="math/sum", uuid=7, client="::1:443", status=404)
        rec.exc_info = __import__("sys").exc_info()
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["level"] == "ERROR" and entry["logger"] == "observable_socket_asgi.pipeline"
    assert entry["message"] == "route 'x' failed" and entry["time"][:2] == "20"
    assert (entry["route"], entry["uuid"], entry["client"], entry["status"]) == (
        "math/sum",
        7,
        "::1:443",
        404,
    )
    assert entry["exc_info"].endswith("ValueError: boom")
    # a value JSON cannot hold is written as text
    assert json.loads(JsonFormatter().format(record(client=("h", 1), when={1, 2}))) is not None


def test_logging_config_routes_the_library_and_uvicorn_to_one_handler(
    restore_logging: None,
) -> None:
    """dictConfig(logging_config()) formats library and uvicorn records alike, at the level."""
    stream = io.StringIO()
    config = logging_config("warning")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    logging.getLogger("observable_socket_asgi.asgi").warning(
        "refused %s", "1.2.3.4:5", extra={"client": "1.2.3.4:5"}
    )
    logging.getLogger("observable_socket_asgi.asgi").info("not shown: below the level")
    logging.getLogger("uvicorn.error").warning("from uvicorn")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        "WARNING observable_socket_asgi.asgi: refused 1.2.3.4:5 [client=1.2.3.4:5]"
    )
    assert lines[1].endswith("WARNING uvicorn.error: from uvicorn")


def test_logging_config_json(restore_logging: None) -> None:
    """format="json" writes one JSON object a line, extra fields included."""
    stream = io.StringIO()
    config = logging_config(logging.INFO, format="json")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    logging.getLogger("observable_socket_asgi.pipeline").info(
        "hello", extra={"route": "r", "uuid": "u"}
    )
    entry = json.loads(stream.getvalue())
    assert (entry["message"], entry["route"], entry["uuid"]) == ("hello", "r", "u")
    with pytest.raises(ValueError, match="format must be"):
        logging_config(format="xml")  # type: ignore[arg-type]
