"""The Pythons pyproject.toml's classifiers list are the ones the suite runs on: this one,
and each other one, found on this machine by scripts/test-pythons."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import PROCESS_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "Programming Language :: Python :: "


def listed_versions() -> list[str]:
    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    versions = [c.removeprefix(PREFIX) for c in classifiers if c.startswith(PREFIX)]
    return [v for v in versions if v.count(".") == 1]


def test_classifiers_match_requires_python() -> None:
    """The oldest listed Python is the `requires-python` floor, and the list has no gaps."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minors = sorted(int(v.split(".")[1]) for v in listed_versions())
    assert project["requires-python"] == f">=3.{minors[0]}"
    assert minors == list(range(minors[0], minors[-1] + 1))


def test_every_listed_python_is_run_by_scripts_test_pythons() -> None:
    """scripts/test-pythons finds an interpreter for each listed Python and scripts/test calls
    it, so each listed Python runs the whole suite."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "test-pythons"), "--list"],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert "{}.{}".format(*sys.version_info[:2]) in found
    assert sorted(found) == sorted(listed_versions())
    for version, python in found.items():
        check = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
        assert check.stdout.strip() == version
    assert "scripts/test-pythons" in (ROOT / "scripts" / "test").read_text()
