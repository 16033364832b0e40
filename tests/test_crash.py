"""Crash and run again: ``crash:``, ``reruns``, ``rerun_after``, ``expect.flow_runs``, the cache strategy keys,
``harness crashes``, and nothing left behind when the harness is killed while a crashing run goes on.

What Prefect does at each point (the states the server keeps, the hooks, the rows) is the crash oracle's
(``tests/fidelity/test_crash_fidelity.py``); these tests pin the language and the machinery.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from harness import Scenario, ScenarioError, Session, load_file
from harness.checking.expectations import check
from harness.cli import main
from harness.crashes import points_of
from harness.run.crash import CrashError
from harness.scenario.model import CrashAt
from harness.scenario.writer import plain
from tests.test_cleanup import leftovers, wait_until

ROOT = Path(__file__).resolve().parents[1]
CFPB = ROOT / "scenarios" / "cfpb_crash.yaml"
N_URL = "https://api.example.test/n"


def library(name_part: str) -> Scenario:
    (found,) = [s for s in load_file(CFPB) if isinstance(s, Scenario) and s.name.startswith(f"cfpb etl {name_part}")]
    return found


def test_a_kill_after_the_store_returned_leaves_the_run_running_and_the_rows_twice(harness_session: Session) -> None:
    scenario = library("killed after store_complaints returned")
    outcome = harness_session.run(scenario)
    first, second = outcome.runs
    assert (first.flow.name, second.flow.name) == ("Running", "Completed")
    assert [(t.name, t.state.name) for t in first.tasks] == [
        ("get_complaint_data", "Completed"),
        ("parse_complaint_data", "Completed"),
        ("store_complaints", "Running"),
    ]
    assert outcome.flow == second.flow and outcome.tasks == second.tasks and outcome.result == 1
    assert len(outcome.calls) == 2 and len(outcome.sqlite) == 2
    assert outcome.crashed == "after_return: store_complaints (kill)"
    assert check(scenario, outcome, baseline=[list(outcome.sqlite[0])]) == []


def test_a_wrong_flow_runs_expectation_names_the_run_and_its_line(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: x\nflow: cfpb_etl\nparameters: {size: 1}\n"
        f"endpoints:\n  - request: {library('killed after store_complaints returned').endpoints[0].request.text}\n"
        "    responses: [{json: {hits: {hits: []}}}]\n"
        "crash:\n  at: {after_return: store_complaints}\n"
        "expect:\n  flow_runs:\n    - flow: Crashed\n    - flow: Completed\n      result: 5\n"
    )
    mismatches = check(scenario, harness_session.run(scenario))
    assert [(m.field, m.expected, m.observed, m.line) for m in mismatches] == [
        ("expect.flow_runs[0].flow", "Crashed", "Running", 11),
        ("expect.flow_runs[1].result", 5, 0, 13),
    ]


def test_a_crash_at_a_virtual_second_lands_inside_a_retry_delay(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """503 at 0 s, 503 at 10 s, the process killed at 15 s while the task waits for its second retry; the
    new flow run goes on with the endpoint's next step and the clock at 15 s."""
    scenario = scenario_from(
        f"""
name: killed while waiting to retry
flow: tests.flows:retrying_fetch
endpoints:
  - request: GET {N_URL}
    responses:
      - status: 503
        times: 2
      - json: {{n: 7}}
crash:
  at: {{at_time: 15}}
expect:
  flow_runs:
    - flow: Running
      tasks: {{fetch_n: AwaitingRetry}}
    - flow: Completed
      result: 7
      tasks: {{fetch_n: {{state: Completed, retries: 0}}}}
  calls: {{GET {N_URL}: 3}}
"""
    )
    outcome = harness_session.run(scenario)
    assert check(scenario, outcome) == []
    first, second, third = (c.at for c in outcome.calls)  # virtual seconds: the waits, and a little compute
    assert 10 <= second - first < 11 and 15 <= third < second + 6


def test_a_point_the_flow_never_reaches_is_an_error_naming_it(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: x\nflow: tests.flows:retrying_fetch\nendpoints:\n  - request: GET {N_URL}\n"
        "    responses: [{json: {n: 1}}]\ncrash:\n  at: {after_call: {request: GET " + N_URL + ", n: 2}}\n"
    )
    with pytest.raises(CrashError, match=r"without reaching the crash point `after_call: GET .* \(call 2\)`"):
        harness_session.run(scenario)


def test_a_crash_without_reruns_is_one_killed_run(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: x\nflow: tests.flows:doubles\nparameters: {xs: [1]}\n"
        "crash:\n  at: {after_return: double}\nreruns: 0\nexpect:\n  flow_runs: [{flow: Running}]\n"
    )
    outcome = harness_session.run(scenario)
    assert check(scenario, outcome) == [] and len(outcome.runs) == 1


@pytest.mark.parametrize(
    ("xs", "point", "strategy", "reached"),
    [
        ([-1, 2], "after_return", None, True),  # the failed first run is run 1; the second returns
        ([-1, 2], "after_commit", None, True),
        ([1, 1], "after_return", "cached", False),  # the second is a cache hit: no function returned
        ([1, 1], "after_commit", "cached", False),  # and its transaction committed nothing
        ([1, 1], "before_task", "cached", True),
    ],
)
def test_a_task_point_names_the_nth_run_in_the_flows_order(
    harness_session: Session,
    scenario_from: Callable[[str], Scenario],
    xs: list[int],
    point: str,
    strategy: str | None,
    reached: bool,
) -> None:
    scenario = scenario_from(
        f"name: x\nflow: tests.flows:doubles\nparameters: {{xs: {xs}}}\n"
        f"crash:\n  at: {{{point}: {{task: double, run: 2}}}}\n"
        + (f"strategies: {{{strategy}: }}\n" if strategy else "")
    )
    policy = scenario.strategies[strategy].policy if strategy else None
    if not reached:
        with pytest.raises(CrashError, match="without reaching the crash point"):
            harness_session.run(scenario, policy=policy)
        return
    first, second = harness_session.run(scenario, policy=policy).runs
    assert first.flow.name == "Running" and len(first.tasks) == 2
    assert second.flow.name == "Completed"


CACHED_TWICE = """
name: run twice under a cache
flow: tests.flows:retrying_fetch
endpoints:
  - request: GET URL
    responses: [{json: {n: 1}}]
reruns: 1
rerun_after: AFTER
strategies:
  cached_briefly:
    persist_result: true
    cache_policy: inputs+task_source
    cache_expiration: 60
"""


@pytest.mark.parametrize(("after", "second", "calls"), [(0, "Cached", 1), (61, "Completed", 2)])
def test_a_cached_result_serves_the_rerun_until_it_expires_on_the_virtual_clock(
    harness_session: Session, scenario_from: Callable[[str], Scenario], after: int, second: str, calls: int
) -> None:
    scenario = scenario_from(CACHED_TWICE.replace("URL", N_URL).replace("AFTER", str(after)))
    outcome = harness_session.run(scenario, policy=scenario.strategies["cached_briefly"].policy)
    assert [t.state.name for r in outcome.runs for t in r.tasks] == ["Completed", second]
    assert len(outcome.calls) == calls
    assert outcome.virtual_s >= after


def test_without_a_strategy_reruns_share_no_cache(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(CACHED_TWICE.replace("URL", N_URL).replace("AFTER", "0"))
    outcome = harness_session.run(scenario)
    assert [t.state.name for r in outcome.runs for t in r.tasks] == ["Completed", "Completed"]


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            "crash:\n  at: {after_return: store_complaint}\n",
            7,
            "defines no task 'store_complaint'; did you mean 'store_complaints'",
        ),
        ("crash:\n  at: {after_call: GET https://elsewhere.test/}\n", 7, "is not a declared endpoint"),
        (
            "crash:\n  at: {after_retrun: store_complaints}\n",
            7,
            "unknown crash point 'after_retrun'; did you mean 'after_return'",
        ),
        ("crash:\n  at: {before_task: store_complaints}\n  how: sigkill\n", 8, "unknown way to crash 'sigkill'"),
        ("reruns: -1\n", 6, "must be >= 0"),
        ("rerun_after: 5\n", 6, "`rerun_after` is the time between runs"),
        ("crash:\n  at: {at_time: 0}\n", 7, "more than 0"),
        ("reruns: 1\nexpect:\n  flow_runs:\n    - flow: Completed\n", 8, "makes 2 flow runs"),
        (
            "strategies:\n  mine:\n    persist_result: false\n    cache_policy: inputs\n",
            7,
            "Prefect ignores a cache policy when results are not persisted",
        ),
    ],
)
def test_bad_crash_input_names_its_file_line_and_field(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nflow: cfpb_etl\nendpoints:\n  - request: GET https://api.example.test/\n"
        "    responses: [{status: 200}]\n" + body
    )
    (problem,) = load_file(path)
    assert isinstance(problem, ScenarioError)
    assert f"{path}:{line}:" in str(problem) and message in str(problem), str(problem)


def test_the_points_of_a_run_are_each_task_runs_in_order_with_its_calls_inside(harness_session: Session) -> None:
    plain = library("killed after store_complaints returned").model_copy(update={"crash": None, "strategies": {}})
    points = [str(p) for p in points_of(harness_session.run(plain))]
    url = plain.endpoints[0].request.text
    assert points == [
        "before_task: get_complaint_data",
        f"after_call: {url}",
        *(f"{p}: get_complaint_data" for p in ("after_return", "after_commit", "after_task")),
        *(f"{p}: parse_complaint_data" for p in ("before_task", "after_return", "after_commit", "after_task")),
        *(f"{p}: store_complaints" for p in ("before_task", "after_return", "after_commit", "after_task")),
    ]
    assert CrashAt(point="after_return", task="t", run=2).as_yaml() == {"after_return": {"task": "t", "run": 2}}


def _sweepable(tmp_path: Path, flow: str) -> Path:
    source = library("killed after store_complaints returned")
    doc = {
        "name": f"sweep {flow}",
        "flow": flow,
        "parameters": {"size": 1},
        "endpoints": [
            {"request": e.request.text, "responses": [{"json": plain(e.responses[0].json_)}]} for e in source.endpoints
        ],
        "expect": {"flow": "Completed"},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_sweep_finds_the_store_twice_in_the_flow_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sweepable(tmp_path, "cfpb_etl")
    found = tmp_path / "found.yaml"
    assert main(["crashes", str(path), "--write", str(found), "--json", str(tmp_path / "s.json")]) == 1
    out = capsys.readouterr().out
    failing = sorted(line.split("  ")[0] for line in out.splitlines() if "  FAIL  " in line)
    assert failing == [f"{p}: store_complaints" for p in ("after_commit", "after_return", "after_task")], out
    assert "13 point(s), 3 lose or duplicate data" in out
    written = load_file(found)
    assert [s.crash.at.point for s in written if isinstance(s, Scenario) and s.crash] == [
        "after_return",
        "after_commit",
        "after_task",
    ]


def test_the_sweep_passes_every_point_of_the_idempotent_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sweepable(tmp_path, "example_flows.cfpb_idempotent:cfpb_etl_idempotent")
    (tmp_path / "example_flows").symlink_to(ROOT / "scenarios" / "example_flows")
    assert main(["crashes", str(path)]) == 0, capsys.readouterr().out
    assert "13 point(s), 0 lose or duplicate data" in capsys.readouterr().out


def test_killing_the_harness_while_a_crashing_run_goes_on_leaves_no_process_and_no_folder(tmp_path: Path) -> None:
    fifo, marker = tmp_path / "hold", tmp_path / "holding"
    os.mkfifo(fifo)
    scenario = tmp_path / "held.yaml"
    scenario.write_text(
        f"name: held\nflow: tests.flows:held_by_a_fifo\nparameters: {{path: {str(fifo)!r}, marker: {str(marker)!r}}}\n"
        "crash:\n  at: {after_return: after_the_fifo}\n"
    )
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    harness = subprocess.Popen(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())", "run", str(scenario)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temporary)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: _crash_leftovers(harness.pid)[0], 60), "the crashing run never started"
        assert wait_until(marker.exists, 60), "the crashing run never reached the FIFO"
        harness.send_signal(signal.SIGKILL)
        harness.wait()
        assert wait_until(lambda: _crash_leftovers(harness.pid) == ([], []), 10), _crash_leftovers(harness.pid)
        # the harness's own folders too (its session's results and wire, the command's Prefect home, its server's)
        assert wait_until(lambda: leftovers(harness.pid, tmp_path) == set(), 10), leftovers(harness.pid, tmp_path)
    finally:
        if harness.poll() is None:
            harness.kill()
        for pid in _crash_leftovers(harness.pid)[0]:
            os.kill(pid, signal.SIGKILL)


def _crash_leftovers(harness: int) -> tuple[list[int], list[str]]:
    """The crashing runs' processes of the harness ``harness`` (template and children) and their folders."""
    processes = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            if b"harness.run._crashing" in args and f"HARNESS_PARENT={harness}".encode() in environ:
                processes.append(int(proc.name))
    folders = [str(p) for where in (Path("/dev/shm"), Path("/tmp")) for p in where.glob(f"harness-*-{harness}-*")]
    return processes, sorted(f for f in folders if "history" in f or "crash" in f)
