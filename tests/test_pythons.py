"""The Pythons pyproject.toml's classifiers list are the ones the suite runs on: this one,
and each other one, found on this machine by scripts/test-pythons."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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
    found = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    missing = [version for version, python in found.items() if python == "MISSING"]
    if missing and os.environ.get("OBSERVABLE_SOCKET_REQUIRE_PYTHONS") != "1":
        pytest.skip(f"Python {', '.join(missing)} not on this machine (CI requires them)")
    assert result.returncode == 0, result.stdout + result.stderr
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


def only_the_system_python(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment that finds no Python but /usr/bin's (no pyenv, no PYTHON_3_X)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON_3_", "PYENV"))}
    env.update(HOME=str(tmp_path), PATH="/usr/local/bin:/usr/bin:/bin", **extra)
    env.pop("OBSERVABLE_SOCKET_REQUIRE_PYTHONS", None)
    return env


def hidden_pythons(env: dict[str, str]) -> list[str]:
    listed = subprocess.run(
        [str(ROOT / "scripts" / "test-pythons"), "--list"],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        cwd=ROOT,
        env=env,
    )
    return [line.split()[0] for line in listed.stdout.splitlines() if line.endswith(" MISSING")]


def test_a_missing_python_is_named_not_failed_unless_required(tmp_path: Path) -> None:
    """On a machine with fewer Pythons than the classifiers list, scripts/test-pythons runs
    those it finds, names the others on stderr and in scripts/test's summary, and passes;
    with OBSERVABLE_SOCKET_REQUIRE_PYTHONS=1 (CI) a missing one fails it."""
    summary = tmp_path / "summary"
    env = only_the_system_python(tmp_path, OBSERVABLE_SOCKET_SUMMARY=str(summary))
    missing = hidden_pythons(env)
    if not missing:
        pytest.skip("/usr/bin here holds every listed Python: none to leave out")

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "scripts" / "test-pythons")],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            cwd=ROOT,
            env={**env, **extra},
        )

    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    noted = summary.read_text()
    for version in missing:
        assert f"the suite on Python {version}: listed" in result.stderr
        assert f"the suite on Python {version}: listed" in noted
        assert f"the suite on Python {version} (" not in result.stdout  # not run

    required = run(OBSERVABLE_SOCKET_REQUIRE_PYTHONS="1")
    assert required.returncode != 0
    assert "OBSERVABLE_SOCKET_REQUIRE_PYTHONS=1" in required.stderr


def test_the_suite_names_what_it_skipped_for_scripts_test_summary(tmp_path: Path) -> None:
    """On a machine without the other Pythons, the suite's check of them skips and writes why
    to $OBSERVABLE_SOCKET_SUMMARY (scripts/test prints it last); CI's
    OBSERVABLE_SOCKET_REQUIRE_PYTHONS=1 makes the same check fail instead."""
    summary = tmp_path / "summary"
    env = only_the_system_python(tmp_path, OBSERVABLE_SOCKET_SUMMARY=str(summary))
    missing = hidden_pythons(env)
    if not missing:
        pytest.skip("/usr/bin here holds every listed Python: none to leave out")
    test = "tests/test_pythons.py::test_every_listed_python_is_run_by_scripts_test_pythons"

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            cwd=ROOT,
            env={**env, **extra},
        )

    skipped = run()
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    noted = summary.read_text()
    assert "1 test(s) skipped" in noted
    for version in missing:
        assert version in noted

    required = run(OBSERVABLE_SOCKET_REQUIRE_PYTHONS="1")
    assert required.returncode == 1 and "1 failed" in required.stdout, required.stdout
