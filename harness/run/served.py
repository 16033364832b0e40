"""``cancel: {how: runner}``: the flow run served by Prefect's own ``Runner``, as ``flow.serve()`` and workers serve
it, and cancelled through the API at a point.

In the harness's process (``Served``): a ``Runner`` (on a thread and event
loop of its own, so that it installs no signal handler here) serves the
scenario's flow as a deployment; the harness creates a flow run of it and
waits for the run's final state. The runner starts the flow's process itself
(Prefect's ``run_flow_in_subprocess``: a spawned interpreter given the
pickled flow), watches the API for the cancellation, signals that process,
runs the flow's ``on_cancellation`` hooks here, and sets the run
``Cancelled``: all of it Prefect's code.

In the flow's process: the flow arrives pickled with a job (``_InChild``),
and unpickling it sets up the run there (``harness.run._served``) before
Prefect's engine starts. At the point, the run is set ``Cancelling`` through
the API and held there until the runner's signal ends it (``Canceller``);
what the process knows of the run is sent to the harness's process as it
changes (snapshots, as a crashing run sends them), the last as the process
exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness._errors import HarnessError, ScenarioTimeout, shown
from harness.policies.apply import CallLog, applied
from harness.run.crash import History, Snapshot, outcome_of_snapshot
from harness.run.internals import prefect_version, wrap
from harness.run.pipes import receive
from harness.scenario.model import Scenario
from harness.scenario.resolve import _importable, resolve_flow

if TYPE_CHECKING:
    from harness.run.crash import Session
    from harness.run.outcome import Outcome
    from harness.scenario.strategy import Policy

POLL_S = 0.2  # the runner's polling (its ``query_seconds``): how soon it starts the run and, failing its
# websocket, sees the cancellation
SETTLE_S = 10.0  # at most this long (real time) for the flow's process to end once its run has
WAIT_S = 60.0  # at most this long (real time) for the flow's process to connect, or to end after its run


def served(scenario: Scenario) -> bool:
    return scenario.cancel is not None and scenario.cancel.how == "runner"


class ServedError(HarnessError):
    """The served run did not go as its scenario says: its process failed, or never reached the point."""


class Served:
    """The first run of a history, served by Prefect's runner in a process the runner starts (``run_history``
    takes it where it takes a ``Crashing``)."""

    def __init__(
        self, session: Session, scenario: Scenario, *, real_time: bool | None = None, policy: Policy | None = None
    ) -> None:
        assert scenario.cancel is not None and session.server is not None
        if prefect_version() < (3, 9):
            raise ServedError(
                f"scenario {scenario.name!r} ({shown(scenario.path)}:{scenario.line_of('cancel')}): "
                "`cancel: {how: runner}` needs Prefect 3.9's runner"
            )
        self.session, self.scenario, self.policy = session, scenario, policy
        self.real_time = session.real_time if real_time is None else real_time
        self.history = History.made(scenario)

    def abandon(self) -> None:
        self.history.close()

    def outcome(self) -> Outcome:
        session, scenario = self.session, self.scenario
        started = time.perf_counter()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = self.history.folder / "served.sock"
        listener.bind(str(address))
        listener.listen(1)
        reports = _Reports(listener)
        server = session.server
        assert server is not None
        job = {
            "harness": os.getpid(),
            "socket": str(address),
            "setup": {"server": {"api_url": server.api_url, "port": server.port}, "environment": server.environment()},
            "transport": session.transport,
            "scenario": scenario,
            "policy": self.policy,
            "real_time": self.real_time,
            "history": self.history,
        }
        hooks: list[tuple[str, str, str, Any]] = []
        flow = resolve_flow(scenario.flow, base=scenario.path.parent)
        try:
            with (
                session.api(),  # the session's settings: the runner's process inherits them
                self.history.results(),
                applied(self.policy, flow, CallLog([], time.sleep, time.monotonic), near=scenario.path.parent) as flow,
                _runner_hooks_counted(hooks),
                _importable(scenario.path.parent),  # the flow's process is given this sys.path: it imports the flow
            ):
                copy = flow.with_options()
                copy._harness_job = _InChild(job)
                run_id, ended = _serve(copy, scenario.parameters, reports, session.time_limit)
            reports.done.wait(SETTLE_S)
        finally:
            reports.close()
        snapshot = reports.last
        where = f"scenario {scenario.name!r} ({shown(scenario.path)}:{scenario.line_of('cancel')})"
        if not ended:
            raise ScenarioTimeout(f"{where}: the served run ran past its {session.time_limit:g} s wall-clock limit")
        if snapshot is None:
            raise ServedError(f"{where}: the flow's process, started by Prefect's runner, reported nothing")
        if snapshot.error:
            raise ServedError(f"{where}: the flow's process failed:\n{snapshot.error}")
        snapshot = snapshot if snapshot.flow_run_id is not None else _with_id(snapshot, run_id)
        return outcome_of_snapshot(
            session, scenario, self.history, snapshot, time.perf_counter() - started, tuple(hooks)
        )


def _with_id(snapshot: Snapshot, run_id: Any) -> Snapshot:
    import dataclasses

    return dataclasses.replace(snapshot, flow_run_id=run_id)


class _Reports:
    """The snapshots the flow's process sends, read on a thread of their own until it closes its end."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.last: Snapshot | None = None
        self.done = threading.Event()
        self.connected = threading.Event()
        threading.Thread(target=self._read, daemon=True, name="harness-served-reports").start()

    def close(self) -> None:
        """No more reports: a reader still waiting for the process to connect stops."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _read(self) -> None:
        try:
            self.listener.settimeout(WAIT_S)
            connection, _ = self.listener.accept()
            self.connected.set()
            with connection:
                while True:
                    try:
                        self.last = receive(connection.fileno())
                    except (EOFError, OSError):
                        return
        except OSError:
            return
        finally:
            self.done.set()


def _serve(flow: Any, parameters: dict[str, Any], reports: _Reports, time_limit: float | None) -> tuple[Any, bool]:
    """Serve ``flow`` with Prefect's runner until one run of it has ended (its final state, and its process gone);
    the run's id, and whether it ended within ``time_limit``."""
    found: dict[str, Any] = {}

    async def serve() -> None:
        from prefect.client.orchestration import get_client
        from prefect.runner import Runner

        runner = Runner(name=f"harness-{uuid.uuid4().hex[:8]}", query_seconds=POLL_S, pause_on_shutdown=False)
        deployment = await runner.aadd_flow(flow, name=runner.name)
        serving = asyncio.create_task(runner.start())
        deadline = time.monotonic() + time_limit if time_limit else None
        try:
            async with get_client() as client:
                run = await client.create_flow_run_from_deployment(deployment, parameters=parameters)
                found["id"] = run.id
                final_at = None
                while deadline is None or time.monotonic() < deadline:
                    state = (await client.read_flow_run(run.id)).state
                    if state is not None and state.is_final():
                        final_at = final_at or time.monotonic()
                        if reports.done.is_set() or time.monotonic() - final_at > SETTLE_S:
                            found["ended"] = True  # its process gone (or never started: nothing to wait for)
                            break
                    if serving.done():
                        serving.result()  # the runner failed: its error
                        break
                    await asyncio.sleep(0.05)
                await runner.astop()
                await asyncio.wait_for(serving, WAIT_S)
                with contextlib.suppress(Exception):
                    await client.delete_deployment(deployment)
        finally:
            if not serving.done():
                serving.cancel()

    failed: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # noqa: BLE001 (reported in the harness's thread)
            failed.append(exc)

    thread = threading.Thread(target=main, name="harness-runner")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return found.get("id"), bool(found.get("ended"))


@contextlib.contextmanager
def _runner_hooks_counted(ran: list[tuple[str, str, str, Any]]) -> Iterator[None]:
    """The hooks Prefect's runner runs for a flow run (in this process), recorded as the engine's are."""

    def counting(original: Any) -> Any:
        async def run_hooks(hooks: list[Any], flow_run: Any, flow: Any, state: Any) -> Any:
            kind = "on_cancellation" if state.is_cancelling() else "on_crashed" if state.is_crashed() else "unknown"
            ran.extend(("flow", flow.name, kind, flow_run.id) for _ in hooks)
            return await original(hooks, flow_run, flow, state)

        return run_hooks

    with contextlib.ExitStack() as stack:
        wrap(stack, "prefect.runner._hook_runner:_run_hooks", counting)
        yield


class _InChild:
    """The job that goes with the pickled flow: unpickled in the flow's process, it sets the run up there
    (``harness.run._served``, named rather than imported: that program imports the session)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job

    def __reduce__(self) -> tuple[Any, ...]:
        return (_by_name, ("harness.run._served:install", self.job))


def _by_name(where: str, job: dict[str, Any]) -> Any:
    """In the harness's own process (a copy of the flow): the job again; in the flow's, ``where(job)``."""
    if os.getpid() == job["harness"]:
        return _InChild(job)
    import importlib

    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)(job)
