"""Optional dependencies: which extra installs what is missing, and the command that does it.

Each part that needs an extra (metrics, tracing, Redis, the client, the FastAPI adapter)
imports it under `with require(extra, what):`, so a missing package is reported the same way
everywhere. The command is worded for where this copy of the package came from: a message
saying `pip install "observable-socket-asgi[client]"` only works once the package is on an
index; installed from a clone, a wheel file or a VCS URL, that command finds nothing (or
something else). pip records the source of a direct install in the distribution's
`direct_url.json` (PEP 610): a local directory (editable or not), an archive, or a VCS URL and
revision. The command names that same source, and the interpreter running now, so it installs
into this environment.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["DISTRIBUTION", "install_command", "require", "requirement"]

DISTRIBUTION = "observable-socket-asgi"


def requirement(extra: str, direct_url: dict[str, Any] | None) -> tuple[str, ...]:
    """pip's arguments for `extra` of the package installed as `direct_url` describes
    (None: from an index)."""
    url = direct_url.get("url") if direct_url else None
    if not isinstance(url, str) or direct_url is None:
        return (f"{DISTRIBUTION}[{extra}]",)
    vcs = direct_url.get("vcs_info")
    if isinstance(vcs, dict):
        revision = vcs.get("requested_revision") or vcs.get("commit_id")
        at = f"@{revision}" if revision else ""
        return (f"{DISTRIBUTION}[{extra}] @ {vcs.get('vcs', 'git')}+{url}{at}",)
    parts = urlsplit(url)
    if "dir_info" in direct_url and parts.scheme == "file":
        path = unquote(parts.path)
        editable = bool(direct_url["dir_info"].get("editable"))
        return ("-e", f"{path}[{extra}]") if editable else (f"{path}[{extra}]",)
    # an archive (a wheel or an sdist, local or remote): the same file, with the extra
    return (f"{DISTRIBUTION}[{extra}] @ {url}",)


def _direct_url() -> dict[str, Any] | None:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def install_command(extra: str) -> str:
    """A shell command that installs `extra` into the running environment, from the source
    this copy of the package was installed from."""
    args = requirement(extra, _direct_url())
    return shlex.join([sys.executable, "-m", "pip", "install", *args])


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
            f"{what} needs {missing}; install the extra: {install_command(extra)}"
        ) from exc
