"""Scenarios of one session are isolated, and Prefect's races are pinned, so outcomes repeat exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness import Outcome, Scenario, ScenarioTimeout, Session, check

COUNT = "https://api.example.test/count"


def test_a_task_cache_does_not_leak_into_the_next_scenario(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A cached task that completed in one scenario is not served from that cache in the next one."""
    healthy = scenario_from(f"""
name: cached, healthy
flow: tests.flows:cached_flow
endpoints:
  - request: GET {COUNT}
    responses: [{{json: {{count: 3}}}}]
expect:
  flow: Completed
  result: 3
  calls: {{GET {COUNT}: 1}}
""")
    down = scenario_from(f"""
name: cached, down
flow: tests.flows:cached_flow
endpoints:
  - request: GET {COUNT}
    responses: [{{status: 500}}]
expect:
  flow: Failed
  tasks:
    cached_count: {{state: Failed, retries: 2}}
  calls: {{GET {COUNT}: 3}}
""")
    for scenario in (healthy, down, healthy):
        assert check(scenario, harness_session.run(scenario)) == []


FIRE_AND_FORGET = """
name: fire and forget
flow: tests.flows:fire_and_forget
parameters: {repos: [octo/up, octo/down]}
endpoints:
  - request: GET https://api.github.com/repos/octo/up
    responses: [{json: {stargazers_count: 7}}]
  - request: GET https://api.github.com/repos/octo/down
    responses: [{status: 500}]
"""


def _summary(outcome: Outcome) -> tuple[Any, ...]:
    return (
        outcome.flow.name,
        sorted((t.name, t.state.name, t.run_count, t.note) for t in outcome.tasks),
        outcome.counts,
        outcome.warnings,
    )


def test_tasks_the_flow_does_not_wait_on_end_the_same_way_every_time(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Submitted and never waited on: each finishes its attempt, then Prefect cancels it; 20 runs agree."""
    scenario = scenario_from(FIRE_AND_FORGET)
    summaries = {repr(_summary(harness_session.run(scenario))) for _ in range(20)}
    assert len(summaries) == 1, summaries
    outcome = harness_session.run(scenario)
    assert outcome.flow.name == "Completed"
    assert sorted((t.state.name, t.run_count, t.note) for t in outcome.tasks) == [
        ("Completed", 1, ""),
        # Prefect counts the retry it entered (Retrying) before it saw the cancel event: run_count 2, 1 call
        ("Crashed", 2, "still running when the flow returned; cancelled by Prefect"),
    ]
    assert outcome.counts == {
        "GET https://api.github.com/repos/octo/up": 1,
        "GET https://api.github.com/repos/octo/down": 1,
    }
    (warning,) = outcome.warnings
    assert "without waiting on task runs it submitted" in warning and "submitted_stars (1 run)" in warning


def test_a_task_still_running_past_the_wall_clock_limit_is_named(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The time limit stops the scenario and the error names the task runs that were still running."""
    quick = scenario_from("name: quick\nflow: tests.flows:waits_on_a_slow_submitted_task\nparameters: {seconds: 0}\n")
    assert harness_session.run(quick).flow.name == "Completed"  # Prefect's first-run costs paid
    scenario = scenario_from("name: slow submitted\nflow: tests.flows:waits_on_a_slow_submitted_task\n")
    limited = Session.__new__(Session)
    limited.__dict__.update(harness_session.__dict__)
    limited.time_limit = 0.5
    stuck = r"0.5 s wall-clock limit .*; task runs still running when it was reached: slow_step \(Running\)"
    with pytest.raises(ScenarioTimeout, match=stuck):
        limited.run(scenario)
