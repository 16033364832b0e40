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
import contextlib
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
    """Two flows shaped as ``tests.flows:three_steps`` (three runs of ``step``, an ``on_cancellation`` hook),
    held where the harness's points are, as the crash oracle's flows die there: at the end of the first run's
    function (``after_return: step``), and in its ``on_completion`` hook once the server has its final state
    (``after_task: step``)."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client

    def held_once_recorded(task: Any, task_run: Any, state: Any) -> None:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):  # not created on the server yet
                    recorded = client.read_task_run(task_run.id).state
                    if recorded is not None and recorded.is_final():
                        break
                time.sleep(0.01)
        hold("reached")

    @task
    def step(n: int) -> int:
        mark(f"step{n}")
        if n == 1 and os.environ.get("RUNNER_REFERENCE_CASE") == "after_return":
            hold("reached")
        return n

    @flow(name="after-return", on_cancellation=[on_cancellation])
    def after_return() -> int:
        os.environ["RUNNER_REFERENCE_CASE"] = "after_return"
        return step(1) + step(2) + step(3)

    @flow(name="after-task", on_cancellation=[on_cancellation])
    def after_task() -> int:
        return step.with_options(on_completion=[held_once_recorded])(1) + step(2) + step(3)

    return {"after_return": after_return, "after_task": after_task}


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

    for name in ("reached", "step1", "step2", "step3", "hooks"):
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
        "tasks": sorted([t.name.split("-")[0], t.state.name, t.state.message or ""] for t in tasks),
        "ran": [n for n in ("step1", "step2", "step3") if (MARKS / n).exists()],
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
