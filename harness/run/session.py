"""The session: runs one scenario's flow on Prefect's real engine and records an Outcome.

A ``Session`` owns the one Prefect test server of a pytest session (per
worker) or CLI invocation; starting it changes nothing in the process.
``Session.run`` runs one scenario in a fresh temporary directory with the
session's settings, trust and workers (``scope``), the virtual clock, the
transport, the network guard and the engine hooks in place, and undoes all of
them afterwards: between two runs the process is as it was without the harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import inspect
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from harness._errors import ScenarioTimeout, shown
from harness.policies.apply import CallLog, applied
from harness.run.cancel import Canceller
from harness.run.clock import Clock
from harness.run.data import data_query, read_rows
from harness.run.guard import NetworkGuard
from harness.run.hooks import hooked
from harness.run.injector import Injector, watches_api
from harness.run.internals import check_prefect
from harness.run.kept import session_server
from harness.run.outcome import Outcome, outcome_of
from harness.run.process import ServerHandle
from harness.run.schedules import Call
from harness.run.scope import RunScope, own_results
from harness.run.served import served
from harness.run.server_view import read_view
from harness.run.slots import Slots, declared, limits_after, no_limits_forgotten
from harness.run.states import Recorder
from harness.run.wire.backend import Wire, httpx_on_wire
from harness.scenario.model import Scenario, SqliteExpect

if TYPE_CHECKING:
    from harness.run.crash import History
from harness.scenario.resolve import resolve_flow
from harness.scenario.strategy import Policy


class Responder(Protocol):
    """What answers the flow's requests during a run: the scenario's ``Injector`` (through respx, and through the
    wire server for other clients), or a recording run's ``Recording`` (the real hosts, each exchange kept)."""

    calls: list[Call]

    def counts(self) -> dict[str, int]: ...

    def on_wire(self, wire: Wire) -> AbstractContextManager[Any]:
        """The session's wire server answering for it while a run lasts; yields the redirect to it."""
        ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...


ResponderFactory = Callable[[Scenario, Clock, Recorder, str, NetworkGuard], Responder]
Transport, TransportFactory = Responder, ResponderFactory  # their former names


TIME_LIMIT_S = 60.0  # a run's wall-clock limit, unless the session is given another (None: no limit)


class Session:
    """One Prefect test server and the settings every scenario runs with."""

    DEFAULT_TIME_LIMIT = TIME_LIMIT_S

    def __init__(
        self,
        real_time: bool = False,
        time_limit: float | None = DEFAULT_TIME_LIMIT,
        transport: str = "respx",
        server: ServerHandle | None = None,
    ) -> None:
        check_prefect()  # before anything starts: the harness's answers rest on Prefect's internals
        self.transport = transport  # httpx's transport when a scenario names none: "respx" or "wire"
        self.wire: Wire | None = None
        self.real_time = real_time
        self.time_limit = time_limit
        self.server: ServerHandle | None = None
        self._given = server  # a server another process runs (a crashing run's, in its own process)
        self._stack = contextlib.ExitStack()
        self._scope: RunScope | None = None  # what a run sets in the process, built once the server is up
        self.memo: dict[Any, Any] = {}  # what later stages compute once per session (fault-free baselines)
        self.folders: list[Path] = []  # the session's temporary folders, removed as it closes

    def start(self) -> None:
        """Start the server in the background; safe to call more than once."""
        if self.server is not None:
            return
        self.server = self._given or session_server()  # a kept one only with HARNESS_REUSE_SERVER=1
        try:
            self.server.start()
            self.wire = Wire()
            self._stack.callback(self.wire.close)
            # The session's result storage, emptied after every run (``own_results``).
            self._results = Path(tempfile.mkdtemp(prefix="harness-results-"))
            self._stack.callback(shutil.rmtree, self._results, True)
            self.folders += [self.wire.folder, self._results]
        except BaseException:
            self.close()  # nothing half-started outlives the failure
            raise

    def _ensure_ready(self) -> ServerHandle:
        self.start()
        assert self.server is not None
        if self._scope is None:
            self.server.wait()
            self._scope = RunScope(self.server.environment(), self.server.api_url, self._results, self.wire)
            self._stack.callback(self._scope.close)  # first undone: the events reach the server before it stops
        return self.server

    def close(self) -> None:
        """Flush the session's events, remove its folders and stop the server: each even if one fails."""
        self._scope = None
        try:
            self._stack.close()  # the crashing runs' spare process too
        finally:
            if self.server is not None:
                self.server.stop()
                self.server = None

    def __enter__(self) -> Session:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        scenario: Scenario,
        *,
        real_time: bool | None = None,
        policy: Policy | None = None,
        responder: ResponderFactory | None = None,
        transport: ResponderFactory | None = None,
        history: History | None = None,
        crash: Any = None,
    ) -> Outcome:
        """Run ``scenario``'s flow and return what happened: once, or with ``crash:`` or ``reruns`` every run of
        its history (``harness.run.crash``).

        ``real_time`` overrides the session's mode for this run: sleep retry
        delays and latency for real instead of on the virtual clock.
        ``policy`` sets a fault-tolerance strategy's options on the flow's
        tasks (and flow) for this run only. ``responder`` answers the flow's
        requests instead of the scenario's injector (``harness record``'s
        ``Recording``); ``transport`` is its former name, kept for callers of it.
        ``history`` and ``crash`` are for ``harness.run.crash``: one run of a
        history, and (in the crashing process) where it dies.
        """
        if transport is not None:
            warnings.warn("Session.run(transport=...) is now Session.run(responder=...)", DeprecationWarning, 2)
            responder = responder or transport
        server = self._ensure_ready()
        assert self._scope is not None
        if history is None and scenario.concurrency_limits is not None:
            with declared(scenario, self.api, server.api_url):  # for all the scenario's runs
                return self._runs(scenario, real_time, policy, responder, crash)
        return self._runs(scenario, real_time, policy, responder, crash, history)

    def _runs(
        self,
        scenario: Scenario,
        real_time: bool | None,
        policy: Policy | None,
        responder: ResponderFactory | None,
        crash: Any,
        history: History | None = None,
    ) -> Outcome:
        server = self._ensure_ready()
        assert self._scope is not None
        if history is None and served(scenario):  # by Prefect's runner, in a process it starts
            from harness.run.crash import run_history
            from harness.run.served import Served

            serving = Served(self, scenario, real_time=real_time, policy=policy)
            return run_history(self, scenario, real_time=real_time, policy=policy, crashing=serving)
        if history is None and (scenario.crash is not None or scenario.runs > 1):
            from harness.run.crash import run_history

            return run_history(self, scenario, real_time=real_time, policy=policy)
        flow = resolve_flow(scenario.flow, base=scenario.path.parent)
        query = data_query(scenario, flow)
        place = history.entered() if history is not None else _workdir()
        with self._scope.entered() as foreign, place as workdir:
            # In a context of its own: a context variable the run leaves set (a run cut short by its time
            # limit, say) goes with it, and the user's next flow is never a subflow of a scenario's.
            run = contextvars.copy_context().run
            return run(
                self._run, scenario, flow, server, foreign, workdir, query, real_time, policy, responder, history, crash
            )

    @contextlib.contextmanager
    def api(self) -> Iterator[Any]:
        """A sync client of the session's Prefect server, for reading back what it keeps."""
        self._ensure_ready()
        assert self._scope is not None
        from prefect.client.orchestration import get_client

        with self._scope.entered(), get_client(sync_client=True) as client:
            yield client

    @contextlib.contextmanager
    def scope(self) -> Iterator[list[str]]:
        """The session's settings, trust and environment set in this process as a run has them; yields the other
        Prefect servers' API URLs (the user's own test server), whose traffic is not a run's."""
        self._ensure_ready()
        assert self._scope is not None
        with self._scope.entered() as foreign:
            yield foreign

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` when the session closes (before its server stops)."""
        self._stack.callback(callback)

    def _run(self, scenario: Scenario, *rest: Any) -> Outcome:
        """One run of ``scenario``, its flow called here (``rest``: as ``_watching`` takes them)."""
        with self._watching(scenario, *rest) as watch:
            watch.state = _call(watch.flow, scenario.parameters, faults_api=watches_api(scenario))
        assert watch.outcome is not None
        return watch.outcome

    @contextlib.contextmanager
    def watching(
        self,
        scenario: Scenario,
        *,
        real_time: bool,
        policy: Policy | None,
        history: History,
        crash: Any,
        also: tuple[int, ...] = (),
    ) -> Iterator[Watch]:
        """One run of ``scenario`` set up in this process and left for Prefect to call: the flow's process that
        Prefect's runner started (``harness.run.served``), where Prefect's engine runs the flow itself. Entered
        before the engine starts; what the run did is sent by ``crash`` (its ``armed``) as it goes. ``also``: the
        loopback ports the process may reach besides the server's (the runner's control channel)."""
        server = self._ensure_ready()
        assert self._scope is not None
        flow = resolve_flow(scenario.flow, base=scenario.path.parent)
        query = data_query(scenario, flow)
        with (
            self._scope.entered() as foreign,
            history.entered() as workdir,
            self._watching(
                scenario,
                flow,
                server,
                [*foreign, *(f"http://127.0.0.1:{p}" for p in also)],
                workdir,
                query,
                real_time,
                policy,
                None,
                history,
                crash,
            ) as watch,
        ):
            yield watch

    @contextlib.contextmanager
    def _watching(
        self,
        scenario: Scenario,
        flow: Any,
        server: ServerHandle,
        foreign: list[str],
        workdir: Path,
        query: SqliteExpect | None,
        real_time: bool | None,
        policy: Policy | None,
        responder: ResponderFactory | None,
        history: History | None = None,
        crash: Any = None,
    ) -> Iterator[Watch]:
        """Everything a run of ``scenario`` has in place while its flow is called (in the ``with``), and what it
        did, once it has returned (``Watch.outcome``)."""
        real = self.real_time if real_time is None else real_time
        clock = history.clock(real) if history is not None else Clock(real_time=real)
        recorder = Recorder(clock)
        # Other Prefect servers' traffic (the user's own test server's workers) is not the flow's: let through.
        guard = NetworkGuard(server.port, also=[_port(url) for url in foreign])
        answering: Responder = (
            responder(scenario, clock, recorder, server.api_url, guard)
            if responder is not None
            else Injector(
                scenario,
                clock,
                recorder,
                server.api_url,
                mock_httpx=not httpx_on_wire(scenario, self.transport),
                passthrough=foreign,
                flow=flow,
            )
        )
        if history is not None:
            history.resume(answering)
        log = CallLog(answering.calls, clock.sleep, clock.now)
        first = history is None or history.positions is None  # ``cancel:`` acts on the first run of a history
        canceller = Canceller(scenario.cancel) if scenario.cancel is not None and first else None
        if crash is not None:
            crash.canceller = canceller  # its snapshots say where the run was cancelled
            crash.guard = guard  # and what the network guard refused
        running: list[str] = []  # the task runs unfinished when the time limit was reached

        def unfinished() -> None:
            running.extend(f"{r.name} ({r.history[-1][2]})" for r in recorder.unfinished())

        started = time.perf_counter()
        clock.started = started - (history.compute if history is not None else 0.0)  # a history's clock goes on
        rerun_after = history.rerun_after if history is not None and history.positions is not None else 0.0
        slots = Slots(clock, server.api_url, rerun_after) if scenario.concurrency_limits is not None else None
        if crash is not None:
            crash.slots = slots  # the lease clock moves to where the process dies, before it does
        try:
            with (
                history.results() if history is not None else own_results(),
                crash.armed(clock, recorder, answering) if crash is not None else contextlib.nullcontext(),
                canceller.wired(clock, recorder, answering) if canceller is not None else contextlib.nullcontext(),
                applied(policy, flow, log, near=scenario.path.parent) as flow,
                hooked(clock, recorder, scenario.seed),
                no_limits_forgotten(),
                slots.installed() if slots is not None else contextlib.nullcontext(),
                answering,
                self._wired(answering) as redirect,
                guard.active(redirect),
                # innermost: once the flow has returned, no late signal lands in the undoing of the above
                _time_limit(self.time_limit, unfinished),
            ):
                watch = Watch(flow)
                yield watch
        except _Hung:
            raise ScenarioTimeout(
                f"scenario {scenario.name!r} ({shown(scenario.path)}:{scenario.line}) ran past its "
                f"{self.time_limit:g} s wall-clock limit and was stopped"
                + (f"; task runs still running when it was reached: {', '.join(running)}" if running else "")
            ) from None
        wall = time.perf_counter() - started
        virtual = clock.now()
        if history is not None:
            history.ended(clock, answering)
        sqlite_value, sqlite_error = read_rows(workdir, query)
        api = getattr(answering, "api", None)
        view = None
        if api is not None:  # the server's view, read once the run is over
            reported = {r.id: (r.name, api.delivered.get(r.id)) for r in recorder.tasks.values()}
            view = read_view(recorder.flow_run_id or api.flow_run_id(), [i for i, _ in api.created], reported)
        limits = limits_after(scenario, slots.waited, recorder.name_of) if slots is not None else None
        outcome = outcome_of(
            scenario,
            watch.state,
            recorder,
            answering,
            wall,
            virtual,
            sqlite_value,
            sqlite_error,
            guard,
            clock,
            view,
            limits,
        )
        if canceller is not None:
            outcome = dataclasses.replace(outcome, cancelled=canceller.cancelled())
        watch.outcome = outcome

    @contextlib.contextmanager
    def _wired(self, responder: Responder) -> Iterator[Any]:
        """The wire server answering for ``responder``, and the redirect to it (none for a responder written
        before ``on_wire``: its clients other than httpx meet the guard alone)."""
        on_wire = getattr(responder, "on_wire", None)
        if self.wire is None or on_wire is None:
            yield None
            return
        with on_wire(self.wire) as redirect:
            yield redirect


@dataclasses.dataclass
class Watch:
    """A run under way: the flow to call (a strategy's options on it), what the call returned, and once the
    run is over, its outcome."""

    flow: Any
    state: Any = None
    outcome: Outcome | None = None


class _Hung(BaseException):
    """Raised in the main thread when a scenario outlives its wall-clock limit.

    A BaseException, so that the flow's own ``except Exception`` cannot swallow it.
    """


@contextlib.contextmanager
def _time_limit(seconds: float | None, on_expiry: Callable[[], None] = lambda: None) -> Iterator[None]:
    """End a hung run after ``seconds`` of wall time, without SIGALRM.

    Prefect enforces ``timeout_seconds`` with SIGALRM on the main thread, so the
    harness must not use it: a watcher thread sends SIGUSR1 to the main thread,
    whose handler raises ``_Hung``; a blocking sleep is interrupted by it too.
    ``on_expiry`` runs once, in the watcher, the moment the limit is reached.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    done = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if not done.is_set():
            raise _Hung

    def watch() -> None:
        if done.wait(seconds):
            return
        on_expiry()
        while not done.is_set():
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
            done.wait(1.0)

    previous = signal.signal(signal.SIGUSR1, handler)
    watcher = threading.Thread(target=watch, name="harness-time-limit", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, previous)


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _call(flow: Any, parameters: dict[str, Any], faults_api: bool = False) -> Any:
    """The flow's final state; or, in a run that faults Prefect's API (``faults_api``), when Prefect could not
    run the flow to a state (its API unreachable, or lost mid-run), the exception the caller of the flow gets.
    An error of the harness's own is raised, never reported as Prefect's."""
    try:
        if inspect.iscoroutinefunction(flow.fn):
            return asyncio.run(flow(**parameters, return_state=True))
        return flow(**parameters, return_state=True)
    except Exception as exc:
        if faults_api and not _the_harnesss(exc):
            return exc
        raise


_HARNESS = Path(__file__).resolve().parents[1]


def _the_harnesss(exc: BaseException) -> bool:
    """Whether ``exc`` was raised in the harness's own code (and is not a fault it serves on purpose)."""
    import httpx

    if isinstance(exc, httpx.TransportError):
        return False
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and Path(last.tb_frame.f_code.co_filename).resolve().is_relative_to(_HARNESS)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A fresh temporary working directory, removed afterwards whatever happens."""
    previous = os.getcwd()
    path = Path(tempfile.mkdtemp(prefix="harness-run-"))
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(previous)
        shutil.rmtree(path, ignore_errors=True)
