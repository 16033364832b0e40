"""A scenario's `prefect:` range: its expectations are for those Prefect versions; on another it is skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from harness import ScenarioError, run_scenario
from harness.scenario.loader import load_file

BODY = (
    "flow: github_stars\nparameters:\n  repos: [o/r]\n"
    "endpoints:\n  - request: GET https://api.github.com/repos/o/r\n    responses: [{json: {stargazers_count: 1}}]\n"
    "expect:\n  flow: Completed\n"
)


def _write(tmp_path: Path, *docs: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("---\n".join(docs))
    return path


def test_a_scenario_for_another_prefect_says_why_and_is_not_run(tmp_path: Path) -> None:
    (other, this) = load_file(_write(tmp_path, f"name: other\nprefect: '>=99'\n{BODY}", f"name: this\n{BODY}"))
    assert not isinstance(other, ScenarioError) and not isinstance(this, ScenarioError)
    reason = other.skipped()
    assert reason == f"its expectations are for Prefect >=99; Prefect {version('prefect')} is installed"
    assert this.skipped() is None
    result = run_scenario(None, other)  # type: ignore[arg-type]  (no session: nothing may run)
    assert (result.verdict, result.skipped, result.outcome, result.passed) == ("skip", reason, None, True)
    (same,) = load_file(_write(tmp_path, f"name: same\nprefect: '>=3'\n{BODY}"))
    assert not isinstance(same, ScenarioError) and same.skipped() is None


def test_a_range_that_is_no_version_specifier_is_refused_with_its_line(tmp_path: Path) -> None:
    (doc,) = load_file(_write(tmp_path, f"name: bad\n{BODY}prefect: 'three point eight'\n"))
    assert isinstance(doc, ScenarioError)
    problem = doc.first
    assert (problem.line, problem.field) == (10, "prefect")
    assert "'three point eight' is not a version specifier such as '>=3.8'" in problem.message


def test_harness_run_and_pytest_count_it_as_skipped(tmp_path: Path) -> None:
    _write(tmp_path, f"name: other\nprefect: '<3'\n{BODY}", f"name: this\n{BODY}")
    run = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "s.yaml", "--json", "out.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1/2 scenario(s) passed, 1 skipped (for another Prefect), 0 invalid" in run.stdout
    rows = {r["name"]: r for r in json.loads((tmp_path / "out.json").read_text())["scenarios"]}
    assert rows["other"]["verdict"] == "skip" and rows["other"]["skipped"].startswith("its expectations are for")
    assert rows["this"]["verdict"] == "pass"


def test_pytest_skips_the_item_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"scenarios/s": f"name: other\nprefect: '<3'\n{BODY}"})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*its expectations are for Prefect <3; Prefect * is installed*"])
