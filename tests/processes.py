"""Child processes for the tests: a Python snippet in a fresh interpreter, and a clean stop.

A fresh interpreter is how a test sees which modules a code path imports, or how the package
behaves with a dependency missing, without disturbing the suite's own modules.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import PROCESS_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent


def run_hidden(hidden: tuple[str, ...], body: str) -> subprocess.CompletedProcess[str]:
    """Run `body` in a new interpreter in which the modules `hidden` cannot be imported."""
    code = "import sys\n"
    code += "".join(f"sys.modules[{name!r}] = None\n" for name in hidden)
    code += textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float) -> None:
    """Terminate `proc` and wait up to `grace` seconds for it, then kill it."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
