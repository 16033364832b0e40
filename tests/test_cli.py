"""The `harness` command as a user meets it: versioned, quiet on a clean run, bars only on a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from harness.cli import main

SCENARIO = """
name: stars recover
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 500}, {json: {stargazers_count: 7}}]
expect:
  flow: Completed
  tasks: {get_stars: {state: Completed, retries: 1}}
  calls: {GET https://api.github.com/repos/octo/cat: 2}
"""


def harness(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("harness")), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_version_names_the_harness_prefect_and_the_tested_range(capsys: object) -> None:
    """`harness --version` prints both versions and the Prefect minors the harness is tested with, and exits 0."""
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out.strip() == (
        f"harness {version('prefect-fault-harness')} (prefect {version('prefect')}; tested with Prefect 3.7 to 3.9)"
    )


def test_a_clean_run_prints_nothing_on_stderr(tmp_path: Path) -> None:
    """No Prefect warning or log line, no progress bar: stdout has the report, stderr stays empty."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text(SCENARIO)
    run = harness(tmp_path, "run", "scenarios")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1/1 scenario(s) passed" in run.stdout
    assert run.stderr == ""
    compared = harness(tmp_path, "compare", "scenarios", "--strategies", "as_written,no_retries", "--seeds", "1")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "as_written" in compared.stdout
    assert compared.stderr == ""  # not a terminal: no progress bar


def test_run_name_selects_a_scenario_or_its_variant_and_python_m_harness_is_the_same_command(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    other = SCENARIO.replace("name: ", "name: another ", 1)
    (tmp_path / "scenarios" / "s.yaml").write_text(SCENARIO + "---\n" + other)
    name = SCENARIO.split("name: ", 1)[1].splitlines()[0]
    run = harness(tmp_path, "run", "--name", name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1/1 scenario(s) passed" in run.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    as_module = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--name", "another *"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert as_module.returncode == 0, as_module.stdout + as_module.stderr
    assert f"another {name}" in as_module.stdout and "1/1 scenario(s) passed" in as_module.stdout
    missing = harness(tmp_path, "run", "--name", "no such scenario")
    assert missing.returncode == 2 and "--name 'no such scenario' selects no scenario" in missing.stderr


def test_validate_says_how_many_rows_strategy_variants_make_and_an_invalid_file_alone_prints_no_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "s.yaml").write_text(
        SCENARIO + "strategies:\n  no_retries:\n    retries: 0\n    expect:\n      flow: Failed\n"
        "      tasks: {get_stars: {state: Failed, retries: 0}}\n"
        "      calls: {GET https://api.github.com/repos/octo/cat: 1}\n"
    )
    assert main(["validate", str(tmp_path / "s.yaml")]) == 0
    assert capsys.readouterr().out == (
        "1 scenario(s) valid (2 rows with their strategy variants, as `harness run` runs them), 0 invalid\n"
    )
    (tmp_path / "bad.yaml").write_text("name: x\nflow: nope\n")
    run = harness(tmp_path, "run", "bad.yaml")
    assert run.returncode == 2
    assert "scenario " not in run.stdout and "0/0 scenario(s) passed, 1 invalid" in run.stdout
