"""The application a command names as `module:attribute`, imported as `uvicorn module:app` does.

`serve`, `asyncapi` and `typescript` take the app this way: the working directory is
importable, and dots after the colon reach into attributes (`package.module:holder.router`).
A name that leads nowhere raises `AppNotFound`, which the command line reports as a usage
mistake (exit status 2) with what was expected and what was found.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["AppNotFound", "import_app", "load_router"]


class AppNotFound(ImportError):
    """The `module:attribute` given does not lead to an app (or to a router, where one is
    needed). An `ImportError`, as the same mistake is for uvicorn."""


def import_app(spec: str) -> Any:
    """Import `module:attribute` and return the attribute, whatever it is.

    Raises:
        AppNotFound: the module cannot be imported or has no such attribute.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise AppNotFound(f"cannot import {spec!r}: {exc}") from None
    return value


def load_router(spec: str) -> Any:
    """Import `module:attribute` (dots allowed after the colon) and check it is a router.

    Raises:
        AppNotFound: `spec` is not `module:attribute`, leads nowhere, or to something that
            cannot describe itself as a router does (`asyncapi()`, `typescript()`).
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppNotFound(f"expected module:attribute, got {spec!r}")
    # the same rule as `uvicorn module:app`: the working directory is importable
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppNotFound(f"cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppNotFound(f"{module_name!r} has no attribute {attribute!r}") from None
    if not (
        callable(getattr(obj, "asyncapi", None)) and callable(getattr(obj, "typescript", None))
    ):
        raise AppNotFound(f"{spec} is {type(obj).__name__}, not a SocketRouter")
    return obj
