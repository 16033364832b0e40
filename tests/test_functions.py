"""``functions:``: faults on in-process calls (SQLite, files, any Python function) in the step language.

What each ready kind raises is compared with the real failure in ``tests/test_function_kinds.py``; whether
Prefect's states, run counts and rows agree with the real failure provoked by hand is the oracle's
(``tests/fidelity/test_function_fidelity.py``). These tests pin the language, the schedules, the call log and
counts, the virtual waits, whose calls are faulted, and that every patch is undone.
"""

from __future__ import annotations

import builtins
import io
import os
import sqlite3
from collections.abc import Callable

import pytest

from harness import Outcome, Scenario, ScenarioError, Session
from harness.checking.expectations import check, describe_outcome

ROWS = "tests.flows:rows_stored"
COUNT = "SELECT COUNT(*) FROM t"


def passing(session: Session, scenario: Scenario) -> Outcome:
    outcome = session.run(scenario)
    assert check(scenario, outcome) == []
    return outcome


def served(outcome: Outcome, key: str) -> list[str]:
    return [c.served for c in outcome.calls if c.endpoint == key]


def commit_steps(*steps: str) -> str:
    return "functions:\n  - call: sqlite3:commit\n    responses:\n" + "".join(f"      - {s}\n" for s in steps)


def test_a_busy_database_twice_then_free_fails_as_written_and_stores_every_row_when_retried(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: busy\nflow: {ROWS}\nparameters: {{rows: 3}}\n"
        + commit_steps("{raise: sqlite_busy, times: 2}", "{pass: true}")
        + "expect:\n  flow: Failed\n  calls: {sqlite3:commit: 1}\n"
        f"  sqlite: {{path: rows.db, query: '{COUNT}', equals: 0}}\n"
        "  virtual_time: {min: 5, max: 5}\n"  # the connection's busy timeout (5 s by default), waited once
        "strategies:\n  transient:\n    retries: 3\n    retry_delay_seconds: 0\n    retry_condition: transient\n"
        "    expect:\n      flow: Completed\n      calls: {sqlite3:commit: 3}\n"
        f"      sqlite: {{path: rows.db, query: '{COUNT}', equals: 3}}\n"
        "      tasks: {store_rows: {retries: 2}}\n      virtual_time: {min: 10, max: 10}\n"
    )
    (_, written, _), (_, retried, policy) = scenario.cases()
    outcome = passing(harness_session, written)
    assert served(outcome, "sqlite3:commit") == ["sqlite_busy"]
    outcome = harness_session.run(retried, policy=policy)
    assert check(retried, outcome) == []
    assert served(outcome, "sqlite3:commit") == ["sqlite_busy", "sqlite_busy", "pass"]
    assert "calls  sqlite3:commit: 3  [sqlite_busy, sqlite_busy, pass]" in "\n".join(describe_outcome(outcome))


def test_a_busy_database_waits_the_connections_own_timeout(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: busy soon\nflow: {ROWS}\nparameters: {{timeout: 0.25}}\n"
        + commit_steps("{raise: sqlite_busy, latency: 1}")
        + "expect:\n  flow: Failed\n  virtual_time: {min: 1.25, max: 1.25}\n"
        "  tasks: {store_rows: {state: Failed, message: database is locked}}\n"
    )
    passing(harness_session, scenario)


def test_a_full_database_on_the_commit_stores_no_row_and_is_not_retried_as_transient(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: full\nflow: {ROWS}\n"
        + commit_steps("{raise: sqlite_full}", "{pass: true}")
        + f"expect:\n  flow: Failed\n  sqlite: {{path: rows.db, query: '{COUNT}', equals: 0}}\n"
        "strategies:\n  transient:\n    retries: 3\n    retry_delay_seconds: 0\n    retry_condition: transient\n"
        "    expect:\n      flow: Failed\n      tasks: {store_rows: {retries: 0}}\n      calls: {sqlite3:commit: 1}\n"
        "  everything:\n    retries: 3\n    retry_delay_seconds: 0\n"
        f"    expect:\n      flow: Completed\n      sqlite: {{path: rows.db, query: '{COUNT}', equals: 3}}\n"
    )
    for _, case, policy in scenario.cases():
        outcome = harness_session.run(case, policy=policy)
        assert check(case, outcome) == [], case.name


def test_where_picks_the_database_and_an_unmatched_call_goes_through(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: where\nflow: {ROWS}\nparameters: {{db_path: kept.db}}\n"
        "functions:\n  - call: sqlite3:execute\n    where: {path: other.db}\n    responses: [{raise: sqlite_disk_io}]\n"
        f"expect:\n  flow: Completed\n  calls: {{sqlite3:execute: 0}}\n"
        f"  sqlite: {{path: kept.db, query: '{COUNT}', equals: 3}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert "calls  sqlite3:execute: 0  [never called]" in describe_outcome(outcome)


def test_a_partial_write_leaves_half_the_file_and_raises_a_full_disk(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: partial\nflow: tests.flows:report_written\n"
        "functions:\n  - call: file:write\n    where: {path: '*.tmp'}\n    responses: [{raise: partial_write}]\n"
        "  - call: file:replace\n    responses: [{pass: true}]\n"
        "expect:\n  flow: Failed\n  calls: {file:write: 1, file:replace: 0}\n"
        "  tasks: {write_report: {state: Failed, message: No space left on device}}\n"
    )
    outcome = harness_session.run(scenario)
    assert check(scenario, outcome) == []
    assert [c.url for c in outcome.calls if c.endpoint == "file:write"] == ["report.txt.tmp"]


@pytest.mark.parametrize(
    ("target", "kind", "message"),
    [
        ("file:open_write", "permission_denied", "Permission denied: 'report.txt.tmp'"),
        ("file:replace", "file_not_found", "No such file or directory: 'report.txt.tmp' -> 'report.txt'"),
        ("file:write", "disk_full", "No space left on device"),
    ],
)
def test_file_targets_raise_what_the_real_call_raises(
    harness_session: Session, scenario_from: Callable[[str], Scenario], target: str, kind: str, message: str
) -> None:
    scenario = scenario_from(
        f"name: {kind}\nflow: tests.flows:report_written\n"
        f"functions:\n  - call: {target}\n    responses: [{{raise: {kind}}}]\n"
        f"expect:\n  flow: Failed\n  calls: {{{target}: 1}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert message in (outcome.tasks[0].state.message or "")


def test_prefects_own_result_files_are_never_faulted(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: results kept\nflow: tests.flows:persisted_result\n"
        "functions:\n  - call: file:open_write\n    responses: [{raise: disk_full}]\n"
        "  - call: file:write\n    responses: [{raise: disk_full}]\n"
        "expect:\n  flow: Completed\n  result: 42\n  calls: {file:open_write: 0, file:write: 0}\n"
    )
    passing(harness_session, scenario)


def test_any_function_method_and_coroutine_by_import_path_where_defined_and_where_imported(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: helpers\nflow: tests.flows:calls_helpers\n"
        "functions:\n"
        "  - call: tests.flows:Warehouse.load\n    responses: [{pass: true, latency: 2}]\n"
        "  - call: tests.flows:Warehouse.ping\n    responses: [{pass: true}]\n"
        "  - call: tests.flows:aload\n    responses: [{latency: 1}]\n"
        "  - call: tests.function_helpers:digest\n    responses: [{pass: true}]\n"
        "expect:\n  flow: Completed\n  result: [2, pong, 2, 195, ba]\n"
        "  calls: {tests.flows:Warehouse.load: 1, tests.flows:Warehouse.ping: 1, tests.flows:aload: 1, "
        "tests.function_helpers:digest: 1}\n"
        "  virtual_time: {min: 3, max: 3}\n"
    )
    passing(harness_session, scenario)
    failing = scenario_from(
        "name: digest fails\nflow: tests.flows:calls_helpers\n"
        "functions:\n  - call: tests.function_helpers:digest\n"
        "    responses: [{raise: {type: 'builtins:ConnectionResetError', message: 'peer gone'}}]\n"
        "expect:\n  flow: Failed\n  tasks: {warehouse_calls: {state: Failed, message: peer gone}}\n"
    )
    passing(harness_session, failing)


def test_chaos_draws_the_same_calls_from_the_same_seed(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    text = (
        f"name: chaos\nflow: {ROWS}\nseed: 7\n"
        "functions:\n  - call: sqlite3:execute\n"
        "    chaos: {rate: 0.5, faults: [{raise: sqlite_busy}, {raise: sqlite_locked}]}\n"
        "strategies:\n  retried:\n    retries: 8\n    retry_delay_seconds: 0\n"
    )
    (_, _, policy), *_ = [c for c in scenario_from(text).cases() if c[2] is not None]
    runs = [harness_session.run(scenario_from(text).cases()[1][1], policy=policy) for _ in range(2)]
    first, second = (served(o, "sqlite3:execute") for o in runs)
    assert first == second
    assert {"sqlite_busy", "sqlite_locked", "pass"} >= set(first) and "pass" in first and len(set(first)) > 1


def test_every_patch_is_undone_after_the_run(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    import tests.flows as flows
    import tests.function_helpers as helpers

    before = (sqlite3.connect, sqlite3.dbapi2.connect, builtins.open, io.open, os.replace, helpers.digest)
    methods = (flows.Warehouse.__dict__["load"], flows.Warehouse.__dict__["ping"], flows.digest, flows.aload)
    scenario = scenario_from(
        f"name: undone\nflow: {ROWS}\n"
        "functions:\n  - call: sqlite3:connect\n    responses: [{pass: true}]\n"
        "  - call: file:write\n    responses: [{pass: true}]\n"
        "  - call: tests.flows:Warehouse.load\n    responses: [{pass: true}]\n"
        "  - call: tests.flows:Warehouse.ping\n    responses: [{pass: true}]\n"
        "  - call: tests.flows:aload\n    responses: [{pass: true}]\n"
        "  - call: tests.function_helpers:digest\n    responses: [{pass: true}]\n"
    )
    harness_session.run(scenario)
    assert (sqlite3.connect, sqlite3.dbapi2.connect, builtins.open, io.open, os.replace, helpers.digest) == before
    assert (flows.Warehouse.__dict__["load"], flows.Warehouse.__dict__["ping"], flows.digest, flows.aload) == methods


@pytest.mark.parametrize(
    ("text", "field", "line", "message"),
    [
        ("  - call: sqlite3:comit\n    responses: [{pass: true}]\n", "functions[0].call", 4, "did you mean"),
        ("  - call: json:dumpz\n    responses: [{pass: true}]\n", "functions[0].call", 4, "did you mean 'dump"),
        ("  - call: json:JSONDecodeError.msg\n    responses: [{pass: true}]\n", "functions[0].call", 4, ""),
        ("  - call: sqlite3:commit\n    responses: [{raise: sqlite_bussy}]\n", "raise", 5, "did you mean"),
        ("  - call: sqlite3:commit\n    responses: [{raise: disk_full}]\n", "functions[0]", 4, "a file's"),
        ("  - call: json:dumps\n    where: {path: x}\n    responses: [{pass: true}]\n", "functions[0]", 4, "none"),
        (
            "  - call: json:dumps\n    responses: [{raise: {type: 'json:JSONDecoder'}}]\n",
            "functions[0].responses[0].raise.type",
            5,
            "not an exception class",
        ),
        ("  - call: file:open_write\n    responses: [{raise: partial_write}]\n", "functions[0]", 4, "file:write"),
        ("  - call: json:dumps\n    responses: [{raise: sqlite_busy, pass: true}]\n", "responses[0]", 5, "not both"),
        (
            "  - call: json:dumps\n    responses: [{raise: {type: 'builtins:UnicodeDecodeError', message: x}}]\n",
            "functions[0].responses[0].raise.type",
            5,
            "cannot be raised with one message",
        ),
        (
            "  - call: json:dumps\n    responses: [{raise: {type: 'builtins:KeyboardInterrupt'}}]\n",
            "functions[0].responses[0].raise.type",
            5,
            "not an Exception",
        ),
        (
            "  - call: tests.flows:digest\n    responses: [{pass: true}]\n"
            "  - call: tests.function_helpers:digest\n    responses: [{pass: true}]\n",
            "functions[1].call",
            6,
            "the same function as tests.flows:digest",
        ),
        (
            "  - call: sqlite3:commit\n    responses: [{pass: true}]\n  - call: sqlite3:commit\n"
            "    responses: [{raise: sqlite_busy}]\n",
            "functions[1].call",
            6,
            "declared twice",
        ),
    ],
)
def test_bad_input_is_refused_at_its_field_and_line(
    scenario_from: Callable[[str], Scenario], text: str, field: str, line: int, message: str
) -> None:
    with pytest.raises(ScenarioError) as raised:
        scenario_from(f"name: bad\nflow: {ROWS}\nfunctions:\n{text}")
    (problem,) = raised.value.problems
    assert field in problem.field and problem.line == line and message in problem.message, problem


def test_a_partial_write_reaches_the_file_half_way(tmp_path: object) -> None:
    from pathlib import Path

    from harness.run.functions import files
    from harness.scenario.kinds import FILE_KINDS

    path = Path(str(tmp_path)) / "out.txt"

    def decide(call: str, where: str, data: object) -> object:
        return ("partial", FILE_KINDS["partial_write"].exception()) if call == "file:write" else None

    with files.faulted(decide, wrap_writes=True), pytest.raises(OSError) as raised, open(path, "w") as out:
        out.write("0123456789")
    assert raised.value.errno == 28 and raised.value.filename is None
    assert path.read_text() == "01234"


def test_a_history_goes_on_with_each_targets_schedule_across_reruns_and_a_crash(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    rerun = scenario_from(
        f"name: rerun\nflow: {ROWS}\nreruns: 1\n"
        + commit_steps("{raise: sqlite_busy}", "{pass: true}")
        + "expect:\n  flow_runs: [{flow: Failed}, {flow: Completed}]\n  calls: {sqlite3:commit: 2}\n"
        f"  sqlite: {{path: rows.db, query: '{COUNT}', equals: 3}}\n"
    )
    passing(harness_session, rerun)
    crashed = scenario_from(  # the first run dies in a process of its own, after its commit went through
        f"name: crashed\nflow: {ROWS}\ncrash: {{at: {{after_return: store_rows}}}}\n"
        + commit_steps("{pass: true}", "{raise: sqlite_full}")
        + "expect:\n  flow_runs: [{flow: Running}, {flow: Failed}]\n  calls: {sqlite3:commit: 2}\n"
        f"  sqlite: {{path: rows.db, query: '{COUNT}', equals: 3}}\n"
    )
    passing(harness_session, crashed)


def test_latency_past_the_tasks_timeout_ends_the_attempt_as_prefects_timeout_does(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """As an endpoint's latency: the attempt is cut at its task's ``timeout_seconds`` (the oracle compares the
    sync case with a real slow call)."""
    scenario = scenario_from(
        "name: too slow\nflow: tests.flows:timed_helper\n"
        "functions:\n  - call: tests.flows:aload\n    responses: [{latency: 5}]\n"
        "expect:\n  flow: TimedOut\n  tasks: {aslow_helper_call: {state: TimedOut, retries: 0}}\n"
        "  virtual_time: {min: 1, max: 1}\n  calls: {tests.flows:aload: 1}\n"
    )
    outcome = passing(harness_session, scenario)
    assert served(outcome, "tests.flows:aload") == ["task timeout_seconds=1 (waited 5 s)"]


@pytest.mark.parametrize(("kind", "state", "retries"), [("sqlite_full", "Failed", 0), ("sqlite_busy", "Completed", 1)])
def test_transient_judges_an_async_tasks_failure_by_its_exception_too(
    harness_session: Session, scenario_from: Callable[[str], Scenario], kind: str, state: str, retries: int
) -> None:
    """In an async task ``state.result()`` is a coroutine a retry condition cannot await: the exception is read
    synchronously all the same."""
    scenario = scenario_from(
        f"name: async {kind}\nflow: tests.flows:arows_stored\n"
        + commit_steps(f"{{raise: {kind}}}", "{pass: true}")
        + "strategies:\n  transient:\n    retries: 2\n    retry_delay_seconds: 0\n    retry_condition: transient\n"
        f"    expect:\n      flow: {state}\n      tasks: {{astore_rows: {{state: {state}, retries: {retries}}}}}\n"
    )
    (_, case, policy) = scenario.cases()[1]
    outcome = harness_session.run(case, policy=policy)
    assert check(case, outcome) == []


def test_transient_ignores_a_function_call_that_went_through_when_the_task_fails_otherwise(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A commit that went through says nothing of the ValueError raised after it: not retried, as without
    ``functions:`` (its last call served is no transport fault)."""
    scenario = scenario_from(
        "name: fails after\nflow: tests.flows:stores_then_fails\n"
        + commit_steps("{pass: true}")
        + "strategies:\n  transient:\n    retries: 2\n    retry_delay_seconds: 0\n    retry_condition: transient\n"
        "    expect:\n      flow: Failed\n      tasks: {store_then_fail: {state: Failed, retries: 0}}\n"
    )
    (_, case, policy) = scenario.cases()[1]
    outcome = harness_session.run(case, policy=policy)
    assert check(case, outcome) == []


def test_a_connection_the_flow_keeps_serves_no_fault_after_its_scenario(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    faulted = scenario_from(
        "name: kept faulted\nflow: tests.flows:kept_connection_store\n"
        + commit_steps("{raise: sqlite_full}")
        + "expect:\n  flow: Failed\n"
    )
    passing(harness_session, faulted)
    plain = scenario_from("name: kept plain\nflow: tests.flows:kept_connection_store\nexpect:\n  flow: Completed\n")
    passing(harness_session, plain)


def test_ready_targets_are_faulted_under_the_names_the_flows_code_imported_them_by(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: imported names\nflow: tests.flows:stored_by_imported_names\n"
        "functions:\n  - call: sqlite3:connect\n    responses: [{pass: true}]\n"
        "  - call: file:replace\n    responses: [{raise: file_not_found}]\n"
        "expect:\n  flow: Failed\n  calls: {sqlite3:connect: 1, file:replace: 1}\n"
    )
    passing(harness_session, scenario)


def test_a_connection_kept_across_the_runs_of_a_history_is_faulted_in_each(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: kept across runs\nflow: tests.flows:kept_connection_store\nreruns: 1\n"
        + commit_steps("{raise: sqlite_full}")
        + "expect:\n  flow_runs: [{flow: Failed}, {flow: Failed}]\n  calls: {sqlite3:commit: 2}\n"
    )
    passing(harness_session, scenario)
