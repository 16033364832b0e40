"""`harness coverage`: the fault kinds a library tries on each flow and endpoint, read without running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

LIBRARY = """
name: stars retried
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses:
      - {fault: read_timeout, times: 2}
      - {status: 503}
      - {malformed: html, status: 502}
      - {json: {stargazers_count: 1}}
expect:
  flow: Completed
  tasks:
    get_stars: {state: Completed, retries: 3}
  calls: {GET https://api.github.com/repos/octo/cat: 5}
strategies:
  no_retries:
    expect:
      flow: Failed
      tasks:
        get_stars: {state: Failed, retries: 0}
      calls: {GET https://api.github.com/repos/octo/cat: 1}
---
name: stars under chaos
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    chaos:
      rate: 0.5
      faults: [{fault: connect_error}, {status: 503}]
      otherwise: {json: {stargazers_count: 1}}
expect:
  invariants: [completes]
"""


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "lib.yaml").write_text(LIBRARY)
    return tmp_path


def test_json_counts_scripted_steps_and_chaos_options(library: Path) -> None:
    """Each scripted step counts once whatever its `times`; chaos options count apart; each scenario's checks."""
    assert main(["coverage", "scenarios", "--json", "cov.json"]) == 0
    report = json.loads((library / "cov.json").read_text())
    assert report["rows"] == [
        {
            "flow": "github_stars",
            "endpoint": "GET https://api.github.com/repos/octo/cat",
            "scripted": {
                "fault:read_timeout": 1,
                "malformed:html": 1,
                "status:200": 1,
                "status:502": 1,
                "status:503": 1,
            },
            "chaos": {"fault:connect_error": 1, "status:200": 1, "status:503": 1},
        }
    ]
    first, second = report["scenarios"]
    assert first["checks"] == ["flow.state", "tasks.get_stars.retries", "tasks.get_stars.state", "calls"]
    assert first["strategies"] == {
        "no_retries": ["flow.state", "tasks.get_stars.retries", "tasks.get_stars.state", "calls"]
    }
    assert second["checks"] == ["invariants.completes"]


def test_the_terminal_report_separates_chaos_only_kinds(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Kinds only a chaos option serves are listed apart from the scripted ones."""
    assert main(["coverage", "scenarios", "--markdown", "cov.md"]) == 0
    out = capsys.readouterr().out
    assert "scripted: fault:read_timeout, malformed:html, status:200, status:502, status:503" in out
    assert "chaos only: fault:connect_error" in out
    assert "| github_stars | GET https://api.github.com/repos/octo/cat |" in (library / "cov.md").read_text()


def test_require_exits_1_naming_each_flow_and_the_kinds_it_lacks(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kind only chaos serves does not count; `fault:*` stands for every transport fault."""
    assert main(["coverage", "scenarios", "--require", "fault:read_timeout,status:503"]) == 0
    assert main(["coverage", "scenarios", "--require", "fault:*,status:404"]) == 1
    err = capsys.readouterr().err
    assert "github_stars: no scripted step serves fault:connect_timeout, fault:write_timeout" in err
    assert "fault:read_timeout," not in err  # scripted
    assert "fault:connect_error" in err  # chaos only
    assert err.rstrip().endswith("(its endpoints: GET https://api.github.com/repos/octo/cat)")
    assert main(["coverage", "scenarios", "--require", "status:404", "--flow", "cfpb_etl"]) == 1
    assert (
        "cfpb_etl: no scripted step serves status:404 (its endpoints: no endpoint declared)" in capsys.readouterr().err
    )


def test_a_require_pattern_that_matches_nothing_is_invalid(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt pattern is refused with exit 2, not silently required of nobody."""
    assert main(["coverage", "scenarios", "--require", "faults:*"]) == 2
    assert "'faults:*' matches no kind" in capsys.readouterr().err


def test_prefect_api_routes_and_the_events_stream_are_rows_of_their_own(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (library / "scenarios" / "api.yaml").write_text(
        "name: api faults\nflow: github_stars\nparameters: {repos: [octo/cat]}\n"
        "endpoints:\n  - request: GET https://api.github.com/repos/octo/cat\n"
        "    responses: [{json: {stargazers_count: 1}}]\n"
        "prefect_api:\n  - request: POST /flow_runs/*/set_state\n"
        "    responses: [{status: 503, times: 2}, {fault: lost_answer}, {pass: true}]\n"
        "events: [{pass: true}, {drop: 0.5}]\n"
        "expect:\n  flow: Completed\n"
    )
    assert main(["coverage", "scenarios", "--json", "cov.json"]) == 0
    rows = {row["endpoint"]: row["scripted"] for row in json.loads(Path("cov.json").read_text())["rows"]}
    assert rows["prefect_api: POST /flow_runs/*/set_state"] == {
        "api:fault:lost_answer": 1,
        "api:pass": 1,
        "api:status:503": 1,
    }
    assert rows["events: WS /events/in"] == {"events:drop": 1, "events:pass": 1}
    capsys.readouterr()
    # an endpoint's read_timeout does not stand for the same fault on Prefect's API
    assert main(["coverage", "scenarios", "--require", "api:fault:*,fault:read_timeout"]) == 1
    lacking = capsys.readouterr().err.split("serves ", 1)[1].split(" (its", 1)[0].split(", ")
    assert "api:fault:read_timeout" in lacking and "api:fault:lost_answer" not in lacking
    assert "fault:read_timeout" not in lacking


def test_function_targets_are_rows_of_their_own_and_a_rule_can_require_their_kinds(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (library / "scenarios" / "db.yaml").write_text(
        "name: db faults\nflow: cfpb_etl\nparameters: {size: 1}\n"
        "endpoints:\n  - request: GET https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/\n"
        "    responses: [{json: {hits: {hits: []}}}]\n"
        "functions:\n  - call: sqlite3:commit\n"
        "    responses: [{raise: sqlite_busy, times: 2}, {raise: {type: 'builtins:OSError'}}, {pass: true}]\n"
        "    chaos: {rate: 0.1, faults: [{raise: sqlite_full}]}\n"
        "expect:\n  flow: Completed\n"
    )
    assert main(["coverage", "scenarios", "--json", "cov.json"]) == 0
    (row,) = [
        r for r in json.loads(Path("cov.json").read_text())["rows"] if r["endpoint"] == "functions: sqlite3:commit"
    ]
    assert row["scripted"] == {"function:pass": 1, "function:raise:OSError": 1, "function:sqlite_busy": 1}
    assert row["chaos"] == {"function:pass": 1, "function:sqlite_full": 1}
    capsys.readouterr()
    assert main(["coverage", "scenarios", "--flow", "cfpb_etl", "--require", "function:sqlite_*"]) == 1
    lacking = capsys.readouterr().err.split("serves ", 1)[1].split(" (its", 1)[0].split(", ")
    assert lacking == [
        "function:sqlite_locked",
        "function:sqlite_disk_io",
        "function:sqlite_full",
        "function:sqlite_corrupt",
    ]
