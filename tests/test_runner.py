"""The runner: real Prefect runs, recorded in the flow's own terms, leaving nothing behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Scenario, Session, check

URL = "https://api.example.test/ping"


def test_outcome_records_states_history_calls_and_result(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A retried task's history, run count and the call log come from the real engine."""
    s = scenario_from(f"""
name: ping recovers
flow: tests.flows:delayed_ping
parameters: {{url: "{URL}"}}
endpoints:
  - request: GET {URL}
    responses: [{{status: 503}}, {{status: 204}}]
""")
    outcome = harness_session.run(s)
    assert (outcome.flow.type, outcome.flow.name) == ("COMPLETED", "Completed")
    assert outcome.result == 204
    (task,) = outcome.tasks
    assert task.name == "ping_with_delay"
    assert task.history == ("Pending", "Running", "AwaitingRetry", "Retrying", "Completed")
    assert (task.run_count, task.retries) == (2, 1)
    assert task.delays == (0.2,)
    assert outcome.counts == {f"GET {URL}": 2}
    assert [c.served for c in outcome.calls] == ["503", "204"]
    assert outcome.virtual_s - outcome.wall_s >= 0.19  # the 0.2 s delay was skipped, not slept
    assert [what for _, what in outcome.timeline][-2:] == ["ping_with_delay: Completed", "flow: Completed"]


def test_unmatched_request_fails_even_when_the_flow_catches_it(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The flow swallows the exception and completes; the scenario still fails, naming the request."""
    s = scenario_from(f"""
name: swallowed
flow: tests.flows:swallowing_flow
parameters: {{url: "https://undeclared.invalid/x"}}
endpoints:
  - request: GET {URL}
    responses: [{{status: 200}}]
expect:
  flow: Completed
""")
    outcome = harness_session.run(s)
    assert outcome.flow.name == "Completed"
    assert outcome.result == "caught UnmatchedRequest"
    (mismatch,) = check(s, outcome)
    assert mismatch.field == "endpoints"
    assert "GET https://undeclared.invalid/x matched none" in str(mismatch)
    assert f"GET {URL}" in str(mismatch)


def test_each_scenario_runs_in_a_fresh_directory_that_is_removed(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Relative paths land in a temporary working directory, gone after the run; cwd is restored."""
    before_cwd = os.getcwd()
    s = scenario_from("""
name: writes
flow: tests.flows:cwd_flow
expect:
  sqlite: {path: marker.txt, query: "SELECT * FROM complaint", equals: 1}
""")
    outcome = harness_session.run(s)
    workdir = Path(outcome.result)
    assert outcome.flow.name == "Completed"
    assert workdir.name.startswith("harness-run-") and workdir != Path(before_cwd)
    assert not workdir.exists()
    assert not (Path(before_cwd) / "marker.txt").exists()
    assert os.getcwd() == before_cwd
    assert outcome.sqlite_error is not None  # marker.txt is not a database: reported, not raised


def test_concurrent_mapped_calls_are_each_counted(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Mapped task runs on the thread pool call concurrently; every call is logged once."""
    urls = [f"https://api.example.test/item/{i}" for i in range(8)]
    s = scenario_from(f"""
name: mapped
flow: tests.flows:mapped_fetch
parameters: {{urls: {urls}}}
endpoints:
  - request: GET https://api.example.test/item/*
    responses: [{{status: 200}}]
""")
    outcome = harness_session.run(s)
    assert outcome.result == [200] * 8
    assert outcome.counts == {"GET https://api.example.test/item/*": 8}
    assert sorted(c.url for c in outcome.calls) == sorted(urls)
    assert len(outcome.task_runs("fetch")) == 8


def test_jitter_does_not_depend_on_the_global_random(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Jittered retry delays come from the scenario's seed alone, whatever state the global random is in."""
    import random

    from harness.policies import PRESETS

    s = scenario_from("""
name: jittered
flow: github_stars
parameters: {repos: [octo/cat]}
seed: 5
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 500}, {status: 500}, {json: {stargazers_count: 7}}]
""")
    delays = []
    for global_seed in (1, 2):
        random.seed(global_seed)
        (task,) = harness_session.run(s, policy=PRESETS["exponential_jitter"]).tasks
        delays.append(task.delays)
    assert len(delays[0]) == 2
    assert delays[0] != (1.0, 2.0)  # drawn, not the configured delays
    assert delays[0] == delays[1]


def _outcome_summary(outcome: Any) -> tuple[Any, ...]:
    return (outcome.flow, [(t.name, t.state.name, t.run_count) for t in outcome.tasks], outcome.counts)


def test_repeated_runs_give_the_same_outcome(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The same scenario twice: the same states, retries and calls."""
    s = scenario_from(f"""
name: repeat
flow: tests.flows:delayed_ping
parameters: {{url: "{URL}"}}
endpoints:
  - request: GET {URL}
    chaos: {{rate: 0.5, faults: [{{status: 500}}], otherwise: {{status: 200}}}}
""")
    assert _outcome_summary(harness_session.run(s)) == _outcome_summary(harness_session.run(s))


CFPB_DOWN = """
name: cfpb search down
flow: cfpb_etl
parameters: {size: 3}
endpoints:
  - request: GET https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/?size=3
    responses: [{status: 500, json: {error: down}}]
expect:
  flow: Failed
  tasks:
    get_complaint_data: {state: Failed, retries: 0}
    parse_complaint_data: {runs: 0}
    store_complaints: {runs: 0}
"""


def test_runs_zero_passes_when_the_task_never_ran_and_fails_naming_the_runs_when_it_did(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """`{runs: 0}` holds when the fetch fails; when the fetch succeeds it fails, naming the run seen."""
    down = scenario_from(CFPB_DOWN)
    assert check(down, harness_session.run(down)) == []
    up = scenario_from(
        CFPB_DOWN.replace("{status: 500, json: {error: down}}", "{json: {hits: {hits: []}}}")
        .replace("flow: Failed", "flow: Completed")
        .replace("{state: Failed, retries: 0}", "{state: Completed, runs: 1}")
    )
    mismatches = check(up, harness_session.run(up))
    assert [str(m) for m in mismatches] == [
        "expect.tasks.parse_complaint_data.runs: expected 0, observed 1 (Completed after 0 retries)",
        "expect.tasks.store_complaints.runs: expected 0, observed 1 (Completed after 0 retries)",
    ]


def test_a_subflow_waits_its_own_retry_delay_on_the_virtual_clock(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A subflow's retry waits the subflow's own delay, virtually, not its parent's and not for real."""
    scenario = scenario_from("""
name: subflow retry
flow: tests.flows:parent_of_a_retried_subflow
endpoints:
  - request: GET https://api.example.test/sub
    responses: [{status: 500}, {status: 200}]
""")
    outcome = harness_session.run(scenario)
    assert outcome.flow.name == "Completed"
    assert outcome.waited_s == 1.0
    states = [(at, what) for at, what in outcome.timeline if what.startswith("flow: ")]
    retried = next(i for i, (_, what) in enumerate(states) if what == "flow: AwaitingRetry")
    gap = states[retried + 1][0] - states[retried][0]
    assert 1.0 <= gap < 1.5  # the subflow's 1 s, skipped; slept for real it would read 2 s


def test_a_responder_of_ones_own_answers_the_flows_calls(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """``Session.run(responder=...)`` takes any object with ``calls``, ``counts()`` and the context-manager
    methods (``on_wire`` optional); ``transport=``, its former name, still works and says so."""
    import warnings

    import httpx
    import respx

    from harness.run.schedules import Call

    class Answering:
        def __init__(self, *args: Any) -> None:
            self.calls: list[Call] = []
            self.router = respx.mock(assert_all_called=False)
            self.router.route(host="127.0.0.1").pass_through()
            self.route = self.router.get(URL).mock(return_value=httpx.Response(204))

        def counts(self) -> dict[str, int]:
            return {f"GET {URL}": self.seen}

        def __enter__(self) -> Answering:
            self.router.__enter__()
            return self

        def __exit__(self, *exc: Any) -> None:
            self.seen = self.route.call_count  # respx forgets its calls as it exits
            self.router.__exit__(*exc)

    s = scenario_from(f"""
name: ping answered by a responder of the test's own
flow: tests.flows:delayed_ping
parameters: {{url: "{URL}"}}
endpoints:
  - request: GET {URL}
    responses: [{{status: 500}}]
""")
    outcome = harness_session.run(s, responder=Answering)
    assert (outcome.flow.name, outcome.result, outcome.counts) == ("Completed", 204, {f"GET {URL}": 1})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = harness_session.run(s, transport=Answering)
    assert outcome.result == 204
    assert any("responder=" in str(w.message) and w.category is DeprecationWarning for w in caught)
