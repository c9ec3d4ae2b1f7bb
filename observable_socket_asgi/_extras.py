"""Optional dependencies: the one way a part says which extra installs what it is missing.

Each part that needs an extra (metrics, tracing, Redis, the client, the FastAPI adapter)
imports it under `with require(extra, what):`, so a missing package is reported the same
way everywhere, with the exact `pip install` line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["require"]


@contextmanager
def require(extra: str, what: str) -> Iterator[None]:
    """Let the imports in the block raise an ImportError naming `what` needs which extra.

    Raises:
        ImportError: an import in the block failed; chained to the original.
    """
    try:
        yield
    except ImportError as exc:
        missing = exc.name.split(".")[0] if exc.name else "a package"
        raise ImportError(
            f"{what} needs {missing}; install the extra: "
            f'pip install "observable-socket-asgi[{extra}]"'
        ) from exc
