"""What Prefect's runner (``flow.serve()``, workers) does with a served flow run cancelled through the API, and
``cancel: {how: runner}`` agreeing with it.

The reference (``tests.runner_reference``, plain Prefect, no harness code)
serves two flows shaped as ``tests.flows:three_steps`` with Prefect's
``Runner`` and cancels each run by hand where the flow holds; the harness
serves ``three_steps`` the same way with the cancel point where the
reference holds. Both must agree on the flow's final state and message on
the server, its state history, each task run's state and message, and the
``on_cancellation`` hooks run (in the runner's process). The README
("Cancellation") states what they find; ``tests/test_prefect_api.py`` has
``api_only``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort

from harness import Scenario, Session, check

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("runner-reference")
    out = folder / "out.json"
    env = {**os.environ, "RUNNER_REFERENCE_MARKS": str(folder), "TMPDIR": str(folder)}  # its runner's storage too
    done = subprocess.run(
        [sys.executable, "-m", "tests.runner_reference", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


POINTS = {"after_return": "after_return: step", "after_task": "after_task: step"}  # where each reference holds


@pytest.mark.parametrize("case", sorted(POINTS))
def test_the_runner_kills_the_flows_process_and_the_server_records_cancelled(served: dict, case: str) -> None:
    run = served[case]
    assert run["flow"] == "Cancelled"
    assert run["message"] == "Flow run was cancelled successfully."
    assert run["history"] == ["Scheduled", "Pending", "Submitting", "Running", "Cancelling", "Cancelled"]
    assert run["ran"] == ["step1"]  # nothing after the point ran


@pytest.mark.parametrize("case", sorted(POINTS))
def test_the_task_run_the_signal_lands_in_is_crashed(served: dict, case: str) -> None:
    """Even once the server has its Completed (``after_task``): Prefect's engine still holds the run."""
    assert served[case]["tasks"] == [["step", "Crashed", "Execution was aborted by a termination signal."]]


@pytest.mark.parametrize("case", sorted(POINTS))
def test_on_cancellation_runs_once_in_the_runners_process_not_the_flows(served: dict, case: str) -> None:
    hooks = served[case]["hooks"]
    assert [(h["process"], h["state"]) for h in hooks] == [("runner", "Cancelling")]


@pytest.mark.parametrize("case", sorted(POINTS))
def test_the_harness_agrees_with_prefects_runner(
    served: dict, case: str, harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    point, task = POINTS[case].split(": ")
    scenario = scenario_from(
        f"name: {case}\nflow: tests.flows:three_steps\ncancel: {{at: {{{point}: {task}}}, how: runner}}\n"
    )
    outcome = harness_session.run(scenario)
    reference = served[case]
    assert (outcome.flow.name, outcome.flow.message) == (reference["flow"], reference["message"])
    with harness_session.api() as client:
        (run,) = client.read_flow_runs(  # the session's last run of the flow: this one
            flow_filter=FlowFilter(name=FlowFilterName(any_=["three-steps"])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
        states = client.read_flow_run_states(run.id)
    assert [s.name for s in sorted(states, key=lambda s: s.timestamp)] == reference["history"]
    assert sorted([t.name, t.state.name, t.state.message or ""] for t in outcome.tasks) == reference["tasks"]
    assert [h for h in outcome.hooks if h[2] == "on_cancellation"] == [
        ("flow", "three-steps", "on_cancellation")
    ] * len(reference["hooks"])
    assert outcome.cancelled is not None and outcome.cancelled.startswith(f"{POINTS[case]} (runner) at ")
    assert check(scenario, outcome) == []


def test_a_point_the_served_run_never_reaches_fails_the_scenario_and_leaves_nothing_behind(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The run completes under the runner; the harness's process is as before: its SIGTERM handler, its
    threads and child processes, and no deployment left on the server."""
    import multiprocessing
    import signal
    import threading

    handler, threads = signal.getsignal(signal.SIGTERM), set(threading.enumerate())
    scenario = scenario_from(
        "name: never cancelled\nflow: tests.flows:three_steps\ncancel: {at: {at_time: 30}, how: runner}\n"
        "expect:\n  flow: Completed\n  tasks: {step: [Completed, Completed, Completed]}\n"
    )
    outcome = harness_session.run(scenario)
    (mismatch,) = check(scenario, outcome)
    assert (mismatch.field, mismatch.observed, mismatch.line) == ("cancel.at", "it never did", 3)
    assert outcome.flow.name == "Completed" and [h[2] for h in outcome.hooks] == []
    assert signal.getsignal(signal.SIGTERM) is handler
    assert {t for t in threading.enumerate() if t not in threads and t.name.startswith("harness")} == set()
    assert multiprocessing.active_children() == []
    with harness_session.api() as client:
        assert client.read_deployments() == []


def test_a_served_run_under_a_strategy_then_run_again_as_a_worker_would(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The strategy's options reach the tasks Prefect's engine runs in the runner's process (its retry
    condition sees what was served, on the virtual clock), the history's result storage serves the rerun from
    the cache, and the runner's ``on_cancellation`` hook meets the scenario's endpoints in the run's working
    directory. Nothing is left in the caller's working directory, nor the runner's storage."""
    import tempfile

    scenario = scenario_from(
        "name: served again\nflow: tests.flows:fetch_and_keep\n"
        "endpoints:\n"
        "  - {request: GET https://api.example.test/item/1, responses: [{status: 503, times: 1}, {json: {v: 7}}]}\n"
        "  - {request: GET https://api.example.test/notify, responses: [{json: {}}]}\n"
        "cancel: {at: {after_return: keep}, how: runner}\nreruns: 1\n"
        "strategies:\n  cached:\n    retries: 1\n    retry_condition: transient\n    persist_result: true\n"
        "    cache_policy: inputs+task_source\n"
        "    expect:\n      flow_runs:\n"
        "        - {flow: Cancelled, tasks: {fetch_item: {state: Completed, retries: 1}, keep: Crashed}}\n"
        "        - {flow: Completed, result: 7, tasks: {fetch_item: Cached, keep: Completed}}\n"
        "      calls: {GET https://api.example.test/item/1: 2, GET https://api.example.test/notify: 1}\n"
        "      hooks: {flow: {on_cancellation: 1}}\n"
    )
    ((_, variant, policy),) = [c for c in scenario.cases() if c[2] is not None]
    outcome = harness_session.run(variant, policy=policy)
    assert check(variant, outcome) == []
    # the runner's storage was the history's, removed with it (other workers' sessions come and go meanwhile)
    assert not (Path(tempfile.gettempdir()) / "runner_storage").exists()
    assert not Path("cancelled.txt").exists()


def test_a_connection_the_served_flows_process_was_refused_fails_the_scenario(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: reaches out\nflow: tests.flows:reaches_out_then_steps\n"
        "cancel: {at: {after_return: step}, how: runner}\nexpect:\n  flow: Cancelled\n"
    )
    outcome = harness_session.run(scenario)
    assert outcome.flow.name == "Cancelled"
    (mismatch,) = check(scenario, outcome)
    assert mismatch.field == "network" and "undeclared.example.org" in mismatch.observed
