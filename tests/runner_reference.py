"""What Prefect's own runner does when a flow run it serves is cancelled through the API: plain Prefect, by hand.

``python -m tests.runner_reference OUT.json`` serves two flows with a
``Runner`` (what ``flow.serve()`` runs), inside ``prefect_test_harness()``,
and for each case creates a flow run of its deployment, waits (real time)
until the flow's process reaches the case's point, sets the run
``Cancelling`` as the UI and ``prefect flow-run cancel`` do, and waits for the
run's final state. It writes, per case, the server's final flow state and its
history, each task run's state and message, the ``on_cancellation`` hook's
runs with the process each ran in, and the seconds from ``Cancelling`` to the
final state. It uses none of the harness's code.

This is what ``cancel: {how: runner}`` would have to agree with; the README
("Cancellation") states it, and ``tests/test_prefect_runner.py`` pins it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.fidelity import reference  # noqa: F401 (first: the reference's settings before Prefect reads any)

WAIT_S = 30.0  # at most this long (real time) for a point to be reached, or a run to end
MARKS = Path(os.environ.get("RUNNER_REFERENCE_MARKS", "."))  # where the flows leave their marks


def mark(name: str) -> None:
    (MARKS / name).write_text(str(os.getpid()))


def hold(name: str) -> None:
    """Mark ``name``, then wait until the runner ends this process (a case's point: the run is cancelled
    here)."""
    mark(name)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.02)


def on_cancellation(flow: Any, flow_run: Any, state: Any) -> None:
    with open(MARKS / "hooks", "a") as log:
        log.write(json.dumps({"flow": flow.name, "pid": os.getpid(), "state": state.name}) + "\n")


def _flows() -> dict[str, Any]:
    from prefect import flow, task

    @task
    def fetch(hold_here: bool) -> int:
        if hold_here:
            hold("reached")  # cancelled while the task's function runs
        return 1

    @task
    def store(value: int) -> int:
        mark("stored")
        return value

    @flow(name="in-task", on_cancellation=[on_cancellation])
    def in_task() -> int:
        return store(fetch(True))

    @flow(name="between-tasks", on_cancellation=[on_cancellation])
    def between_tasks() -> int:
        value = fetch(False)
        hold("reached")  # cancelled in the flow's own code, after fetch returned and before store
        return store(value)

    return {"in_task": in_task, "between_tasks": between_tasks}


async def _until(check: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise TimeoutError("the reference waited too long")


async def _case(client: Any, deployment: Any) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Cancelling

    for name in ("reached", "stored", "hooks"):
        (MARKS / name).unlink(missing_ok=True)
    run = await client.create_flow_run_from_deployment(deployment)

    async def reached() -> bool:
        return (MARKS / "reached").exists()

    await _until(reached)
    process = int((MARKS / "reached").read_text())
    await client.set_flow_run_state(run.id, Cancelling(message="cancelled by hand"), force=True)
    cancelled_at = time.monotonic()

    async def final() -> Any:
        read = await client.read_flow_run(run.id)
        return read if read.state is not None and read.state.is_final() else None

    ended = await _until(final)
    seconds = time.monotonic() - cancelled_at
    history = [s.name for s in sorted(await client.read_flow_run_states(run.id), key=lambda s: s.timestamp)]
    tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    hooks = (MARKS / "hooks").read_text().splitlines() if (MARKS / "hooks").exists() else []
    return {
        "flow": ended.state.name,
        "message": ended.state.message,
        "history": history,
        "tasks": {t.task_key.split(".")[-1].split("-")[0]: [t.state.name, t.state.message] for t in tasks},
        "stored": (MARKS / "stored").exists(),
        "hooks": [{**json.loads(line), "process": _whose(json.loads(line)["pid"], process)} for line in hooks],
        "seconds": round(seconds, 2),
    }


def _whose(pid: int, flows_process: int) -> str:
    return "runner" if pid == os.getpid() else "flow" if pid == flows_process else "other"


async def _main() -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    runner = Runner(query_seconds=0.5, pause_on_shutdown=False)
    deployments = {name: await runner.aadd_flow(f, name=name) for name, f in _flows().items()}
    serving = asyncio.create_task(runner.start())
    try:
        async with get_client() as client:
            return {name: await _case(client, deployment) for name, deployment in deployments.items()}
    finally:
        await runner.astop()
        await asyncio.wait_for(serving, WAIT_S)


def main(out: str) -> None:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        found = asyncio.run(_main())
    Path(out).write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
