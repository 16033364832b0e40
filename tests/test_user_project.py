"""A user's own project: flows in a package beside ``scenarios/``, run from the project's root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

STARS = """
import httpx
from prefect import flow, task


@task(retries=2)
def get_stars(repo: str) -> int:
    response = httpx.get(f"https://api.github.com/repos/{repo}")
    response.raise_for_status()
    return response.json()["stargazers_count"]


@flow
def stars(repo: str = "octo/cat") -> int:
    return get_stars(repo)
"""

SCENARIO = """
name: my stars recover from a 503
flow: myflows.stars:stars
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 503}, {json: {stargazers_count: 9}}]
expect:
  flow: Completed
  result: 9
  tasks:
    get_stars: {state: Completed, retries: 1}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "myflows").mkdir()
    (tmp_path / "myflows" / "__init__.py").write_text("")
    (tmp_path / "myflows" / "stars.py").write_text(STARS)
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "stars.yaml").write_text(SCENARIO)
    return tmp_path


def _run(project: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PREFECT_")}
    tool = str(Path(sys.executable).with_name(command[0]))
    return subprocess.run(
        [tool, *command[1:]],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_harness_run_imports_the_project_from_the_folder_it_runs_in(project: Path) -> None:
    """`harness run scenarios/` from the project's root imports `myflows` without PYTHONPATH."""
    result = _run(project, "harness", "run", "scenarios/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/1 scenario(s) passed" in result.stdout


def test_pytest_imports_the_project_from_the_folder_it_runs_in(project: Path) -> None:
    """`pytest` from the project's root collects and passes the scenario, without PYTHONPATH."""
    result = _run(project, "pytest", "-p", "no:cacheprovider", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_an_unimportable_flow_says_where_it_looked(project: Path) -> None:
    """A flow module that is nowhere to be found: the problem names the folders searched and the fix."""
    (project / "scenarios" / "stars.yaml").write_text(SCENARIO.replace("myflows.stars", "myflow.stars"))
    result = _run(project, "harness", "validate", "scenarios/")
    assert result.returncode == 2
    assert "scenarios/stars.yaml:3: flow: cannot import flow module 'myflow.stars'" in result.stderr
    assert "no module named 'myflow' in scenarios, . or on sys.path" in result.stderr
    assert "Traceback" not in result.stderr
