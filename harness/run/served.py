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

In the flow's process: the flow arrives pickled as a job (``_stand_in``),
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
import contextvars
import dataclasses
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harness._errors import HarnessError, ScenarioTimeout, shown
from harness.policies.apply import client_settings
from harness.run.crash import History, Snapshot, outcome_of_snapshot
from harness.run.guard import NetworkGuard
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
        self.where = f"scenario {scenario.name!r} ({shown(scenario.path)}:{scenario.line_of('cancel')})"
        if prefect_version() < (3, 9):
            raise ServedError(f"{self.where}: `cancel: {{how: runner}}` needs Prefect 3.9's runner")
        self.session, self.scenario, self.policy = session, scenario, policy
        self.real_time = session.real_time if real_time is None else real_time
        self.history = History.made(scenario)

    def abandon(self) -> None:
        self.history.close()

    def outcome(self) -> Outcome:
        session, scenario, history = self.session, self.scenario, self.history
        server = session.server
        assert server is not None
        started = time.perf_counter()
        flow = resolve_flow(scenario.flow, base=scenario.path.parent)
        hooks: list[tuple[str, str, str, Any]] = []
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = history.folder / "served.sock"
        listener.bind(str(address))
        listener.listen(1)
        reports = _Reports(listener)
        job = {
            "harness": os.getpid(),
            "socket": str(address),
            "setup": {"server": {"api_url": server.api_url, "port": server.port}, "environment": server.environment()},
            "transport": session.transport,
            "scenario": scenario,
            "policy": self.policy,
            "real_time": self.real_time,
            "history": history,
        }
        answering = _HookEndpoints(scenario, server.api_url, reports, self.real_time)
        guard: NetworkGuard | None = None
        try:
            # The settings the runner is started with, which it gives the flow's process (Prefect hydrates the
            # run's context from the runner's): the session's, the history's result storage, the strategy's
            # client settings.
            with session.scope() as foreign:
                answering.foreign = foreign  # other Prefect servers of this process: let through
                guard = NetworkGuard(server.port, also=[_port(url) for url in foreign])
                with (
                    history.results(),
                    client_settings(self.policy.client_settings() if self.policy is not None else {}),
                    _importable(scenario.path.parent),  # the flow's process is given this sys.path
                    # the hooks the runner runs here: in the run's working directory, the endpoints answering them
                    _runner_hooks(hooks, answering),
                    history.entered(),
                    guard.active(),
                ):
                    run_id, ended, state = _serve(
                        _stand_in(flow, job), scenario.parameters, reports, session.time_limit, history.folder
                    )
            reports.done.wait(SETTLE_S)
        finally:
            reports.close()
        snapshot = reports.last
        if not ended:
            cancelled = (
                f" (set Cancelling {snapshot.cancelled}; Prefect's runner never ended the run)"
                if (snapshot is not None and snapshot.cancelled)
                else ""
            )
            raise ScenarioTimeout(
                f"{self.where}: the served run ran past its {session.time_limit:g} s wall-clock limit{cancelled}"
            )
        if snapshot is None:
            said = f": the run ended {state.name} ({state.message})" if state is not None else ""
            raise ServedError(f"{self.where}: the flow's process, started by Prefect's runner, reported nothing{said}")
        if snapshot.error:
            raise ServedError(f"{self.where}: the flow's process failed:\n{snapshot.error}")
        snapshot = answering.went_on(dataclasses.replace(snapshot, flow_run_id=snapshot.flow_run_id or run_id))
        wall = time.perf_counter() - started
        blocked = tuple(guard.blocked) if guard is not None else ()
        return outcome_of_snapshot(session, scenario, history, snapshot, wall, tuple(hooks), blocked)


def _stand_in(flow: Any, job: dict[str, Any]) -> Any:
    """A copy of ``flow`` for the runner (its deployment, its hooks). Pickled for the flow's process, it is the
    job instead, which sets the run up there and gives Prefect's engine the flow as the harness resolved it
    there (``_served.install``): the tasks the flow calls are that process's own, a strategy's options on them."""
    copy = flow.with_options()
    copy.__class__ = type(type(flow).__name__, (type(flow),), {"__reduce__": lambda self: _reduced(job)})
    return copy


def _reduced(job: dict[str, Any]) -> tuple[Any, ...]:
    return (_by_name, ("harness.run._served:install", job))


def _by_name(where: str, job: dict[str, Any]) -> Any:
    """In the flow's process, ``where(job)``: the flow to run, the run set up. (A copy made in the harness's own
    process is never unpickled: the runner pickles the flow only for the process it starts.)"""
    if os.getpid() == job["harness"]:
        raise HarnessError("a served flow's stand-in was unpickled in the harness's own process")
    import importlib

    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)(job)


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
        self.done.set()

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


def _serve(
    flow: Any, parameters: dict[str, Any], reports: _Reports, time_limit: float | None, folder: Path
) -> tuple[Any, bool, Any]:
    """Serve ``flow`` with Prefect's runner until one run of it has ended (its final state, and its process gone);
    the run's id, whether it ended within ``time_limit``, and its last state on the server."""
    found: dict[str, Any] = {}

    async def serve() -> None:
        from prefect.client.orchestration import get_client
        from prefect.runner import Runner

        runner = Runner(name=f"harness-{uuid.uuid4().hex[:8]}", query_seconds=POLL_S, pause_on_shutdown=False)
        runner._tmp_dir = folder / "runner"  # its storage, in the history's folder (Prefect: the temporary one)
        deadline = time.monotonic() + time_limit if time_limit else None
        async with get_client() as client:
            deployment = await runner.aadd_flow(flow, name=runner.name)
            serving = asyncio.create_task(runner.start())
            try:
                run = await client.create_flow_run_from_deployment(deployment, parameters=parameters)
                found["id"], final_at = run.id, None
                while deadline is None or time.monotonic() < deadline:
                    state = found["state"] = (await client.read_flow_run(run.id)).state
                    if state is not None and state.is_final():
                        final_at = final_at or time.monotonic()
                        waited = time.monotonic() - final_at
                        if reports.done.is_set() or waited > (SETTLE_S if reports.connected.is_set() else 1.0):
                            found["ended"] = True  # its process gone (or never connected: nothing to wait for)
                            break
                    if serving.done():
                        serving.result()  # the runner failed: its error
                        break
                    await asyncio.sleep(0.05)
            finally:
                if runner.started:
                    await runner.astop()
                else:  # failed before it started: nothing of it to stop but its task
                    serving.cancel()
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(serving, WAIT_S)
                with contextlib.suppress(Exception):  # nothing of the scenario stays on the server
                    await client.delete_deployment(deployment)

    failed: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # noqa: BLE001 (reported in the harness's thread)
            failed.append(exc)

    context = contextvars.copy_context()  # the caller's settings: the runner's, and so the flow's process's
    thread = threading.Thread(target=context.run, args=(main,), name="harness-runner")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return found.get("id"), bool(found.get("ended")), found.get("state")


@contextlib.contextmanager
def _runner_hooks(
    ran: list[tuple[str, str, str, Any]], answering: Callable[[], AbstractContextManager[Any]]
) -> Iterator[None]:
    """The hooks Prefect's runner runs for a flow run, in this process: recorded as the engine's are, and run
    with the scenario's endpoints answering them (``answering``)."""

    def counting(original: Any) -> Any:
        async def run_hooks(hooks: list[Any], flow_run: Any, flow: Any, state: Any) -> Any:
            kind = "on_cancellation" if state.is_cancelling() else "on_crashed" if state.is_crashed() else "unknown"
            ran.extend(("flow", flow.name, kind, flow_run.id) for _ in hooks)
            with answering():
                return await original(hooks, flow_run, flow, state)

        return run_hooks

    with contextlib.ExitStack() as stack:
        wrap(stack, "prefect.runner._hook_runner:_run_hooks", counting)
        yield


class _HookEndpoints:
    """The scenario's endpoints for the hooks the runner runs here, once the flow's process is gone: each
    endpoint's schedule goes on where that process (or the hooks before) left it, on a clock going on from the
    run's; the calls are the run's too. (Prefect's API and function targets are the flow's process's alone: the
    runner's own requests are never faulted or watched.)"""

    def __init__(self, scenario: Scenario, api_url: str, reports: _Reports, real_time: bool) -> None:
        from harness.scenario.model import Expect

        cleared = {"prefect_api": [], "events": [], "functions": [], "expect": Expect()}
        self.scenario = scenario.model_copy(update=cleared)
        self.api_url, self.reports, self.real_time = api_url, reports, real_time
        self.foreign: list[str] = []  # other Prefect servers of the process: let through
        self.calls: list[Any] = []
        self.positions: list[Any] | None = None  # where the hooks left the schedules

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        from harness.run.clock import Clock
        from harness.run.injector import Injector
        from harness.run.states import Recorder

        self.reports.done.wait(SETTLE_S)  # the process is gone: its last report is in
        last = self.reports.last
        clock = Clock(real_time=self.real_time)
        if last is not None:
            clock.root.offset = last.skipped + last.compute  # the run's time, gone on from where it ended
        injector = Injector(self.scenario, clock, Recorder(clock), self.api_url, passthrough=self.foreign)
        if self.positions is not None:
            injector.go_on(self.positions)
        elif last is not None and last.positions:
            *schedules, _api, _functions, randomness = last.positions
            injector.go_on([*schedules, [], [], randomness])
        try:
            with injector:
                yield
        finally:
            self.calls.extend(injector.calls)
            self.positions = injector.positions()

    def went_on(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with the hooks' calls, and the schedules where the hooks left them (for a rerun)."""
        positions = snapshot.positions
        if self.positions is not None and positions:
            *schedules, _api, _functions, randomness = self.positions
            positions = [*schedules, positions[-3], positions[-2], randomness]
        return dataclasses.replace(snapshot, calls=(*snapshot.calls, *self.calls), positions=positions)


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)
