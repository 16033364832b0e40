"""What Prefect's server recorded of a run, read back after it: the second view of each run.

The flow sees the states its engine set; the server holds what reached it.
After faults on Prefect's API the two can differ (a state the client never
heard was applied, a flow run created twice). Task-run states reach the
server as events, through its task-run recorder, a moment after the engine
set them: the view waits (real time, at most ``SETTLE_S``) until the server
holds each task run in the state of the last event of it that reached the
server (or a final one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from harness.run.injector import SETTLE_S
from harness.run.outcome import StateInfo

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass(frozen=True, slots=True)
class ServerView:
    """The scenario's flow run and its task runs as the server holds them; the flow runs nobody ran to an end."""

    flow: StateInfo | None  # None: the server holds no flow run of it (it was never created)
    tasks: dict[str, StateInfo]  # per task name, its last task run's state
    orphans: tuple[str, ...] = ()  # "id: State" of flow runs created during the run and left unfinished (its own too)


def read_view(flow_run_id: Any, created: list[str], reported: dict[Any, tuple[str, str | None]]) -> ServerView:
    """Read the server's view (the session's client in scope): the flow run ``flow_run_id``, the task runs under
    it (``reported``: id -> its task's name and the state of the last event of it the server got, if any), and
    which of ``created`` were left unfinished."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        flow = _recorded(client.read_flow_run(flow_run_id).state) if flow_run_id is not None else None
        tasks = _task_runs(client, flow_run_id, reported) if flow_run_id is not None else {}
        orphans: list[str] = []
        ids = [UUID(i) for i in created]
        if ids:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
            for run in sorted(runs, key=lambda r: ids.index(r.id)):
                if run.state is None or run.state.type.value not in FINAL:
                    own = " (the flow's own run)" if str(run.id) == str(flow_run_id) else ""
                    orphans.append(f"{run.id}{own}: {run.state.name if run.state is not None else 'no state'}")
    return ServerView(flow, tasks, tuple(orphans))


def _task_runs(client: Any, flow_run_id: Any, reported: dict[Any, tuple[str, str | None]]) -> dict[str, StateInfo]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    deadline = time.monotonic() + SETTLE_S
    while True:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
        held = {r.id: r for r in runs}
        settled = all(
            (run := held.get(i)) is not None
            and run.state is not None
            and (run.state.name == state or run.state.type.value in FINAL)
            for i, (_, state) in reported.items()
            if state is not None
        )
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out: dict[str, StateInfo] = {}
    for run in runs:  # in the order they were to start: a task's last run is the one kept
        recorded = _recorded(run.state)
        if recorded is not None:
            out[reported[run.id][0] if run.id in reported else str(run.name).rsplit("-", 1)[0]] = recorded
    return out


def _recorded(state: Any) -> StateInfo | None:
    return None if state is None else StateInfo(state.type.value, state.name, state.message)
