"""``json_file`` / ``body_file``: a step's body read from a file beside the scenario, or a fixture by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Scenario, ScenarioError, Session
from harness.checking.expectations import check

HEAD = "name: bodies\nflow: github_stars\nparameters: {repos: [o/r, o/s]}\nendpoints:\n"


def endpoint(repo: str, step: str) -> str:
    return f"  - request: GET https://api.github.com/repos/o/{repo}\n    responses: [{step}]\n"


def test_bodies_from_a_file_beside_the_scenario_and_from_a_fixture_by_name(
    harness_session: Session, scenario_from: Callable[[str], Scenario], tmp_path: Path
) -> None:
    (tmp_path / "stars.json").write_text('{"stargazers_count": 5}')
    (tmp_path / "plain.txt").write_text("not json")
    scenario = scenario_from(
        HEAD
        + endpoint("r", "{json_file: stars.json}")
        + endpoint("s", "{json_file: github/get_repo_200_octokit_recorded_body.json}")
        + "expect:\n  flow: Completed\n  result: [5, 0]\n"
    )
    assert check(scenario, harness_session.run(scenario)) == []
    as_text = scenario_from(HEAD.replace("o/r, o/s", "o/r") + endpoint("r", "{body_file: plain.txt}"))
    (step,) = as_text.endpoints[0].responses
    assert step.text == "not json" and not step.has("json")


@pytest.mark.parametrize(
    ("step", "field", "message"),
    [
        ("{json_file: nope.json}", "responses[0].json_file", "no file 'nope.json' beside the scenario file"),
        ("{json_file: github/erors.json}", "responses[0].json_file", "did you mean 'github/errors.json'?"),
        ("{json_file: stars.json, json: {a: 1}}", "responses[0].json_file", "one body"),
        ("{json_file: plain.txt}", "responses[0].json_file", "is not JSON"),
        ("{body_file: big.txt}", "responses[0].body_file", "over 1 MiB"),
        ("{json_file: [a]}", "responses[0].json_file", "a file's path"),
    ],
)
def test_a_body_file_that_cannot_serve_is_a_problem_at_its_line(
    scenario_from: Callable[[str], Scenario], tmp_path: Path, step: str, field: str, message: str
) -> None:
    (tmp_path / "stars.json").write_text('{"stargazers_count": 5}')
    (tmp_path / "plain.txt").write_text("not json")
    (tmp_path / "big.txt").write_text("x" * ((1 << 20) + 1))
    with pytest.raises(ScenarioError) as raised:
        scenario_from(HEAD + endpoint("r", step))
    (problem,) = raised.value.problems
    assert problem.field == f"endpoints[0].{field}" and problem.line == 6 and message in problem.message, problem
