"""Runs spread over worker processes and Dask: the same report as a serial run, in the same order; nothing dropped."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Scenario
from harness._errors import WorkerError
from harness.parallel import Failed, Local, ScenarioRef, run_case
from harness.run.session import Session
from tests.test_cleanup import wait_until

CHAOS = """
name: chaos
flow: github_stars
parameters: {repos: [octo/cat, octo/dog]}
endpoints:
  - request: GET https://api.github.com/repos/*
    chaos:
      rate: 0.4
      faults: [{status: 503}, {fault: read_timeout}, {status: 429, headers: {retry-after: "30"}}]
      otherwise: {json: {stargazers_count: 5}}
---
name: gone
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 404, json: {message: Not Found}}]
"""

ETL = """
name: etl
flow: cfpb_etl
parameters: {size: 2}
endpoints:
  - request: GET https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/
    chaos:
      rate: 0.3
      faults: [{status: 500, text: Internal Server Error}]
      otherwise:
        json: {hits: {total: {value: 2, relation: eq}, hits: [{_source: {state: TN}}, {_source: {state: AL}}]}}
expect:
  sqlite: {path: cfpbcomplaints.db, query: SELECT COUNT(*) FROM complaint, equals: 2}
"""

LIBRARY = """
name: recovers
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 500}, {json: {stargazers_count: 7}}]
expect:
  flow: Completed
  result: [7]
  tasks: {get_stars: {state: Completed, retries: 1}}
strategies:
  no_retries:
    expect: {flow: Failed, tasks: {get_stars: {state: Failed, retries: 0}}}
---
name: expects too much
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 404}]
expect:
  flow: Completed
---
name: returns what does not pickle
flow: local_flows:unpicklable
expect:
  flow: Completed
"""

LOCAL_FLOWS = """
from prefect import flow


class Unpicklable:
    def __reduce__(self):
        raise TypeError("this object does not pickle")

    def __repr__(self):
        return "Unpicklable()"


@flow
def unpicklable():
    return Unpicklable()
"""


def harness(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("harness")), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def cells_without_wall(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    return {**report, "cells": [{k: v for k, v in c.items() if k != "wall_s"} for c in report["cells"]]}


def scenarios_without_wall(path: Path) -> list[dict[str, Any]]:
    """Each scenario's record, wall-clock figures aside (virtual time includes compute; the timeline's order too)."""
    out = []
    for record in json.loads(path.read_text())["scenarios"]:
        record = {k: v for k, v in record.items() if k not in ("wall_s", "virtual_s")}
        record["timeline"] = sorted(what for _, what in record["timeline"])
        out.append(record)
    return out


def compare_args(name: str) -> list[str]:
    return ["compare", "scenarios", "--strategies", "as_written,no_retries", "--seeds", "3", "--json", f"{name}.json"]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A small comparison (chaos, a 404, an ETL with its fault-free baseline) run serially: the reference."""
    tmp = tmp_path_factory.mktemp("compare")
    (tmp / "scenarios").mkdir()
    (tmp / "scenarios" / "a.yaml").write_text(CHAOS)
    (tmp / "scenarios" / "b.yaml").write_text(ETL)
    serial = harness(tmp, *compare_args("serial"))
    assert serial.returncode == 0, serial.stdout + serial.stderr
    return tmp, serial


@pytest.mark.slow
def test_compare_on_two_workers_gives_the_serial_report(
    comparison: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """`harness compare --workers 2`: the same table and the same JSON as one process, wall-clock fields aside."""
    tmp, serial = comparison
    spread = harness(tmp, *compare_args("workers"), "--workers", "2")
    assert spread.returncode == 0, spread.stdout + spread.stderr
    assert spread.stderr == ""
    assert cells_without_wall(tmp / "workers.json") == cells_without_wall(tmp / "serial.json")
    assert spread.stdout == serial.stdout
    assert [c["runs"] for c in cells_without_wall(tmp / "serial.json")["cells"]] == [3, 3, 1, 1, 3, 3]


@pytest.mark.slow
def test_compare_on_a_local_dask_cluster_gives_the_serial_report(
    comparison: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """`harness compare --dask local --workers 2`: the same JSON as one process, wall-clock fields aside."""
    pytest.importorskip("distributed")
    tmp, serial = comparison
    spread = harness(tmp, *compare_args("dask"), "--dask", "local", "--workers", "2")
    assert spread.returncode == 0, spread.stdout + spread.stderr
    assert cells_without_wall(tmp / "dask.json") == cells_without_wall(tmp / "serial.json")
    assert spread.stdout == serial.stdout


@pytest.mark.slow
def test_run_on_two_workers_gives_the_serial_report(tmp_path: Path) -> None:
    """`harness run --workers 2`: the same rows, verdicts, failures and JSON (an unpicklable result too), exit 1."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text(LIBRARY)
    (tmp_path / "scenarios" / "local_flows.py").write_text(LOCAL_FLOWS)
    marker = uuid.uuid4().hex
    runs = {
        n: harness(tmp_path, "run", "scenarios", "--json", f"{n}.json", "--workers", str(n), env={"MARK": marker})
        for n in (1, 2)
    }
    for run in runs.values():
        assert run.returncode == 1, run.stdout + run.stderr
    serial, spread = scenarios_without_wall(tmp_path / "1.json"), scenarios_without_wall(tmp_path / "2.json")
    assert spread == serial
    assert [(r["name"], r["verdict"]) for r in serial] == [
        ("recovers", "pass"),
        ("recovers[no_retries]", "pass"),
        ("expects too much", "FAIL"),
        ("returns what does not pickle", "pass"),
    ]
    assert serial[3]["result"] == "Unpicklable()"

    def rows(out: str) -> list[list[str]]:
        return [line.split()[:4] for line in out.splitlines()[:5]]

    assert rows(runs[2].stdout) == rows(runs[1].stdout)
    assert "3/4 scenario(s) passed" in runs[2].stdout
    assert wait_until(lambda: processes_marked(marker) == [], 15), processes_marked(marker)


def processes_marked(marker: str) -> list[str]:
    """Processes whose environment holds MARK=marker: the command's workers and their servers."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"MARK={marker}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(proc.name)
            except OSError:
                continue
    return found


# -- the pool itself ---------------------------------------------------------------------------------


def whoami(session: Session, i: int) -> tuple[int, int]:
    """A job: its index and the worker process that ran it."""
    return i, os.getpid()


def raises(session: Session, message: str) -> None:
    raise ValueError(message)


def dies(session: Session, marker: str | None) -> str:
    """Kills its worker: every time without a marker file, else only the first time."""
    if marker is None or not Path(marker).exists():
        if marker is not None:
            Path(marker).touch()
        os._exit(3)
    return "survived"


@pytest.mark.slow
def test_values_come_back_in_job_order_and_exceptions_as_failed(tmp_path: Path) -> None:
    """Two workers share the jobs; values are in job order; a job that raises is Failed, the others still run."""
    with Local(2) as pool:
        values = pool.map(whoami, [(i,) for i in range(6)])
        failed = pool.map(raises, [("boom",), ("bang",)])
    assert [v[0] for v in values] == list(range(6))
    assert os.getpid() not in {v[1] for v in values}
    assert [type(f) for f in failed] == [Failed, Failed]
    assert [f.error for f in failed] == ["ValueError: boom", "ValueError: bang"]
    assert "worker process" in failed[0].where


@pytest.mark.slow
def test_a_worker_that_dies_has_its_job_rerun_then_reported(tmp_path: Path) -> None:
    """A job that kills its worker once runs again on a fresh one; one that kills two is Failed, never dropped."""
    ticks: list[int] = []
    with Local(1) as pool:
        values = pool.map(
            dies, [(str(tmp_path / "once"),), (None,), (str(tmp_path / "once"),)], lambda: ticks.append(1)
        )
        after = pool.map(whoami, [(0,)])
    assert values[0] == "survived" and values[2] == "survived"
    assert isinstance(values[1], Failed) and "died, 2 times" in values[1].error
    assert len(ticks) == 3
    assert after[0][0] == 0  # the pool still works


def test_a_scenario_made_in_python_cannot_travel(scenario_from: Any) -> None:
    """Only a scenario loaded from a file can be sent to a worker, which loads it again: say so."""
    made = Scenario(name="made here", flow="github_stars", parameters={"repos": ["o/r"]})
    with pytest.raises(WorkerError, match="made in Python, not loaded from a file"):
        pickle.dumps(ScenarioRef.of(made))
    loaded = scenario_from(CHAOS.split("---")[0])
    travelled = pickle.loads(pickle.dumps(ScenarioRef.of(loaded)))
    assert travelled.scenario() == loaded


@pytest.mark.slow
def test_a_flow_that_does_not_import_on_a_worker_fails_with_the_reason(tmp_path: Path) -> None:
    """The flow's module imported here but is gone on the worker: the run fails naming the environment rule."""
    (tmp_path / "vanishing.py").write_text("from prefect import flow\n\n\n@flow\ndef f():\n    return 1\n")
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text("name: vanishes\nflow: vanishing:f\n")
    from harness import load_file

    (scenario,) = load_file(scenario_file)
    assert isinstance(scenario, Scenario)
    (tmp_path / "vanishing.py").unlink()
    with Local(1) as pool:
        (value,) = pool.map(run_case, [(ScenarioRef.of(scenario), False)])
    assert isinstance(value, Failed)
    assert value.error.startswith("WorkerError: scenario 'vanishes'")
    assert "cannot be loaded on this worker" in value.error
    assert "the harness and the flows importable" in value.error
    assert "vanishing" in value.error


# -- the pool's servers, forked from one forkserver ---------------------------------------------------


def my_server(session: Session, flows: int) -> dict[str, Any]:
    """A job: run ``flows`` flow runs, then say which server answered them and what its database holds."""
    import sqlite3

    noop = Scenario.model_validate({"name": "noop", "flow": "tests.flows:cwd_flow"})
    server = session._ensure_ready()
    for _ in range(flows):
        assert session.run(noop).flow.name == "Completed"
    pid = server.pid  # type: ignore[attr-defined]
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    with sqlite3.connect(server.folder / "prefect.db") as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM flow_run").fetchone()
    return {"pid": pid, "parent": int(stat[1]), "folder": str(server.folder), "flow_runs": rows}


@pytest.mark.slow
def test_the_pool_s_servers_are_forked_from_one_process_each_with_its_own_database() -> None:
    """Prefect's server is imported once: each worker's server is a fork of the same forkserver, and each reads
    its own settings after the fork (its database in its own folder holds its worker's flow runs, and only them)."""
    with Local(2) as pool:
        first, second = served = pool.map(my_server, [(1,), (3,)])
        assert not any(isinstance(s, Failed) for s in served), served
        forkserver = pool._forkserver
        assert forkserver is not None
        assert first["parent"] == second["parent"] == forkserver.pid
    assert first["pid"] != second["pid"] and first["folder"] != second["folder"]
    assert (first["flow_runs"], second["flow_runs"]) == (1, 3)
    assert wait_until(lambda: not any(Path(f["folder"]).exists() for f in (first, second)), 10)
    assert wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in (first["pid"], second["pid"])), 10)


POOL = """
import sys
from harness.parallel import Local
from tests.test_parallel import my_server

pool = Local(2)
for served in pool.map(my_server, [(0,), (0,)]):
    print(served["pid"], served["folder"], flush=True)
print(pool._forkserver.pid, flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.slow
def test_a_killed_pool_leaves_no_process_and_no_folder(tmp_path: Path) -> None:
    """SIGKILL the process that feeds the pool: its workers, servers and forkserver all end, and every folder goes
    (the servers', the forkserver's, the workers' temporary folders, the pool's PREFECT_HOME)."""
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_HOME"}
    proc = subprocess.Popen(
        [sys.executable, "-c", POOL],
        cwd=root,
        env={**env, "PYTHONPATH": str(root), "TMPDIR": str(tmp_path / "tmp")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline().split() for _ in range(3)]
    servers = [(int(pid), Path(folder)) for pid, folder in lines[:2]]
    pids = [int(lines[2][0])] + [pid for pid, _ in servers]

    def folders() -> list[str]:
        shm = Path("/dev/shm")
        mine = list(shm.glob(f"harness-*-{proc.pid}-*")) if shm.is_dir() else []
        return sorted(str(p) for p in [*mine, *(tmp_path / "tmp").glob("harness-*")])

    def processes() -> list[int]:
        return [pid for pid in [*pids, *children] if Path(f"/proc/{pid}/cmdline").exists()]

    children = [int(pid) for pid in _children(proc.pid)]
    assert len(children) == 3, children  # two workers and the forkserver
    assert all(Path(f"/proc/{pid}").exists() and folder.exists() for pid, folder in servers)
    assert any("harness-home-" in f for f in folders()) and any("harness-worker-" in f for f in folders())
    proc.kill()
    proc.wait()
    assert wait_until(lambda: not processes() and not folders(), 20), (processes(), folders())


def _parent(proc: Path) -> int:
    """The parent pid of ``proc`` (a /proc entry); 0 when it is gone."""
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


@pytest.mark.slow
def test_the_servers_outlive_their_forkserver_and_a_new_one_forks_the_next() -> None:
    """The forkserver dies: the servers it forked go on serving their workers, and the next server the pool
    needs comes from a new forkserver."""
    from harness.run.forked import HandedServer

    with Local(1) as pool:
        (before,) = pool.map(my_server, [(1,)])
        assert not isinstance(before, Failed), before
        forkserver = pool._forkserver
        assert forkserver is not None
        dead, served = forkserver.pid, Path(f"/proc/{before['pid']}")
        os.kill(dead, 9)
        assert wait_until(lambda: _parent(served) != dead, 10)  # orphaned: the forkserver has exited
        # A server that followed its forkserver would notice within its 0.5 s watch: this one stays.
        assert not wait_until(lambda: not served.exists() or not Path(before["folder"]).exists(), 0.9)
        (after,) = pool.map(my_server, [(1,)])
        assert not isinstance(after, Failed), after
        assert (after["pid"], after["flow_runs"]) == (before["pid"], 2)  # the same server, its database kept
        server = HandedServer(forkserver.start())
        try:
            assert forkserver.pid != dead
            server.wait()
            assert server.pid is not None and Path(f"/proc/{server.pid}").exists()
        finally:
            server.stop()
        assert not server.folder.exists()


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


@pytest.fixture(scope="module")
def forkserver() -> Iterator[Any]:
    from harness.run.forked import Forkserver

    started = Forkserver()
    yield started
    started.close()


@pytest.mark.slow
def test_a_forked_server_stopped_by_anyone_takes_its_folder_with_it(forkserver: Any) -> None:
    """SIGTERM from whoever (not ``stop()``): the server shuts down and removes its own folder."""
    from harness.run.forked import HandedServer

    server = HandedServer(forkserver.start())
    try:
        server.wait()
        pid = server.pid
        assert pid and server._runs(pid)
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: not server.folder.exists() and not server._runs(pid), 10)
    finally:
        server.stop()


@pytest.mark.slow
def test_a_server_stuck_in_its_shutdown_is_killed(forkserver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that does not end on SIGTERM within the grace period is SIGKILLed; its folder goes."""
    from harness.run.forked import HandedServer

    server = HandedServer(forkserver.start())
    try:
        server.wait()
        pid = server.pid
        assert pid
        os.kill(pid, signal.SIGSTOP)  # it cannot act on the SIGTERM
        monkeypatch.setattr(HandedServer, "GRACE_S", 0.3)
    finally:
        server.stop()
    assert not server._runs(pid) and not server.folder.exists()
    assert wait_until(lambda: str(pid) not in _children(forkserver.pid), 5)  # dead and collected


@pytest.mark.slow
def test_a_server_stopped_before_its_fork_is_never_served() -> None:
    """Stopped while the forkserver still imports: its folder goes at once, and the fork that follows is ended;
    the next server is forked and serves as usual."""
    from harness.run.forked import Forkserver, HandedServer

    cold = Forkserver()
    try:
        doomed = HandedServer(cold.start())
        doomed.stop()  # the forkserver is still importing Prefect's server: nothing forked yet
        assert doomed.pid is None and not doomed.folder.exists()
        live = HandedServer(cold.start())  # requests are taken in order: once it serves, the first was handled
        try:
            live.wait()
            # the doomed fork could not get its pid written, was killed and collected: the live one is all
            assert wait_until(lambda: _children(cold.pid) == [str(live.pid)], 5), _children(cold.pid)
            assert not doomed.folder.exists()
        finally:
            live.stop()
    finally:
        cold.close()


def test_a_server_its_forkserver_never_forked_fails_its_wait_at_once_with_the_forkserver_s_log(
    tmp_path: Path,
) -> None:
    """The forkserver died before forking the server: the wait says so at once (not at its deadline), with
    the forkserver's last words, and the stop removes the folder."""
    from harness._errors import ServerError
    from harness.run.forked import HandedServer

    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    (tmp_path / "forkserver.log").write_text("ImportError: the forkserver's own last words\n")
    (tmp_path / "server").mkdir()
    server = HandedServer(
        {
            "port": 9,  # discard: nothing answers there
            "pid": None,
            "folder": str(tmp_path / "server"),
            "forkserver": gone.pid,
            "forkserver_log": str(tmp_path / "forkserver.log"),
        }
    )
    started = time.monotonic()
    with pytest.raises(ServerError, match="the forkserver's own last words"):
        server.wait(timeout=30)
    assert time.monotonic() - started < 10
    server.stop()
    assert not (tmp_path / "server").exists()
