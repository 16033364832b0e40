"""A good neighbour: a user's own test suite passes beside scenario files, in every order and mode.

``tests/neighbour/`` is a user's project: a flow package, three scenarios, and
tests of the kinds a Prefect project keeps (a session-scoped
``prefect_test_harness()`` reading task runs and logs back from its server,
respx's decorator and fixture, the environment and trust store compared with a
plain subprocess, a local HTTP server called with requests, httpx, urllib and
aiohttp). Each mode runs it in a fresh ``pytest`` process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).with_name("neighbour")
USER_TESTS = 13
SCENARIOS = 3

MODES = {
    "user tests alone": (["tests/"], USER_TESTS),
    "everything": ([], USER_TESTS + SCENARIOS),
    "user tests first": (["tests/", "scenarios/"], USER_TESTS + SCENARIOS),
    "scenarios first": (["scenarios/", "tests/"], USER_TESTS + SCENARIOS),
    "two xdist workers": (["-n", "2"], USER_TESTS + SCENARIOS),
    "plugin off": (["-p", "no:harness"], USER_TESTS),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_the_users_tests_and_the_scenarios_pass_together(mode: str, tmp_path: Path) -> None:
    """Every user test passes, and so does every scenario, whatever runs first; nothing is logged in error."""
    args, expected = MODES[mode]
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PREFECT_")}
    env["HOME"] = str(home)  # the user's own ~/.prefect, apart from this machine's
    result = subprocess.run(
        [str(Path(sys.executable).with_name("pytest")), "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert re.search(rf"\b{expected} passed\b", result.stdout), output[-3000:]
    assert "failed" not in result.stdout
    assert "EventsWorker" not in output and "matched none" not in output, output[-6000:]
