"""The npm tools the suite runs on generated output, installed in tests/js by scripts/install.

Where they are missing the checks skip on a developer's machine and fail in CI
(`OBSERVABLE_SOCKET_REQUIRE_NPM=1`, set by .ci/run), so a green CI run always ran them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).parent / "js"
TSC = JS / "node_modules" / ".bin" / "tsc"
PARSER = JS / "node_modules" / "@asyncapi" / "parser"
VALIDATE = JS / "validate-asyncapi.mjs"
#: a generous bound: node starts slowly on a loaded two-core machine
TOOL_TIMEOUT = float(os.environ.get("OBSERVABLE_SOCKET_TEST_MS", "1")) * 120


def require(path: Path, what: str) -> None:
    """Skip (or, in CI, fail) when `path` is missing."""
    if shutil.which("node") and path.exists():
        return
    message = f"{what} is not installed in tests/js: run ./scripts/install with Node.js and npm"
    if os.environ.get("OBSERVABLE_SOCKET_REQUIRE_NPM") or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def validate_asyncapi(document: Path) -> subprocess.CompletedProcess[str]:
    """Run the AsyncAPI project's parser on `document`; exit status 0 means no error."""
    require(PARSER, "@asyncapi/parser")
    return subprocess.run(
        ["node", str(VALIDATE), str(document)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )


def tsc(*files: Path) -> subprocess.CompletedProcess[str]:
    """Type-check `files` with `tsc --strict --noEmit`; exit status 0 means it compiles."""
    require(TSC, "typescript")
    return subprocess.run(
        [
            str(TSC),
            "--strict",
            "--noEmit",
            "--target",
            "es2020",
            "--module",
            "es2020",
            "--moduleResolution",
            "bundler",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
