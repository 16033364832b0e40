"""`harness run --transport wire` and pytest `--harness-transport=wire`: httpx over real sockets, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = """
name: stars over the chosen transport
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 500}, {json: {stargazers_count: 7}}]
expect:
  flow: Completed
  result: [7]
  tasks: {get_stars: {state: Completed, retries: 1}}
  calls: {GET https://api.github.com/repos/octo/cat: 2}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text(SCENARIO)
    return tmp_path


def _run(project: Path, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [str(Path(sys.executable).with_name(tool)), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("transport", ["respx", "wire"])
def test_harness_run_serves_httpx_over_the_transport_asked_for(project: Path, transport: str) -> None:
    """The same scenario passes on both transports, and the report says which served each call."""
    result = _run(project, "harness", "run", "scenarios", "--transport", transport, "--json", "r.json")
    assert result.returncode == 0, result.stdout + result.stderr
    (report,) = json.loads((project / "r.json").read_text())["scenarios"]
    assert report["passed"]
    assert {call["transport"] for call in report["call_log"]} == {transport}


def test_pytest_option_sends_httpx_over_the_wire(project: Path) -> None:
    """`pytest --harness-transport=wire` passes the scenario with its calls served on real sockets."""
    (project / "tests").mkdir()
    (project / "tests" / "test_calls.py").write_text(
        "def test_wire(harness_session):\n    assert harness_session.transport == 'wire'\n"
    )
    result = _run(project, "pytest", "-p", "no:cacheprovider", "-q", "--harness-transport=wire", "scenarios", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
