"""Crash and run again: the first run's process dies at a chosen point, then the flow is run again.

A scenario with ``crash:`` or ``reruns`` is a history of flow runs sharing
one working directory (its data), one result storage (its cache), the
endpoints' schedules and the virtual clock (``History``). The crashing run
executes in a process of its own, forked from a template that imported
Prefect and the harness and started no thread (``Template``, ``_crashing``),
ahead of need, on the session's server; at the
crash point it sends what the harness must know of the run (a ``Snapshot``:
task runs, calls, hooks, clock, schedules) through a pipe, then signals
itself: SIGKILL (nothing more happens), SIGTERM (Prefect's own handler on
the main thread crashes the run and calls ``on_crashed``), or SIGINT
(``KeyboardInterrupt``). After the point, each hook and state Prefect
records is sent as it comes (Prefect's SIGTERM handling ends the process
itself). The flow run's state is then read back from the server, which
keeps what it last heard. The reruns run in this process.

The points are met inside Prefect's task engine (``Trigger``, each entry in
``harness.run.internals``): ``before_task`` as ``begin_run`` is called,
``after_return`` as ``handle_success`` is (the function has returned),
``after_commit`` once the task's transaction context has exited with the
run Completed, ``after_task`` when, after that, the server has the state;
``after_call`` once the n-th call to an endpoint is answered, ``at_time``
where a wait on the virtual clock reaches that second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness._errors import HarnessError, shown
from harness.run.clock import Clock
from harness.run.data import data_query, read_rows
from harness.run.injector import api_counts, counts_of, watches_api
from harness.run.outcome import Outcome, StateInfo, TaskRun, history_of, hooks_of, task_runs_of
from harness.run.pipes import receive, send
from harness.run.points import Point
from harness.run.process import scratch_folder
from harness.run.schedules import Call
from harness.run.server_view import read_view
from harness.run.slots import limits_after
from harness.scenario.model import Crash, CrashAt, Scenario

if TYPE_CHECKING:
    from harness.run.served import Served
    from harness.run.states import Recorder
    from harness.scenario.strategy import Policy


class Session(Protocol):
    """What a history needs of ``harness.run.session.Session`` (which calls it: it is not imported here)."""

    real_time: bool
    time_limit: float | None
    transport: str
    server: Any
    memo: dict[Any, Any]
    folders: list[Path]

    def run(
        self,
        scenario: Scenario,
        *,
        real_time: bool | None = ...,
        policy: Policy | None = ...,
        history: History | None = ...,
    ) -> Outcome: ...

    def api(self) -> AbstractContextManager[Any]: ...

    def scope(self) -> AbstractContextManager[list[str]]: ...

    def on_close(self, callback: Callable[[], Any]) -> None: ...


SIGNALS = {"kill": signal.SIGKILL, "terminate": signal.SIGTERM, "interrupt": signal.SIGINT}
WAIT_S = 10.0  # at most this long (real time) for the server to record a task run's final state


class CrashError(HarnessError):
    """The crashing run did not go as its scenario says: the point was never reached, or its process failed."""


@dataclass
class History:
    """What the runs of one scenario share: its folder (working directory, result storage), clock, schedules."""

    folder: Path
    rerun_after: float = 0.0
    compute: float = 0.0  # compute seconds of the runs so far: the clock goes on from them
    skipped: float = 0.0  # virtual seconds skipped so far
    positions: list[Any] | None = None  # where the endpoints' schedules are

    @property
    def workdir(self) -> Path:
        return self.folder / "work"

    @property
    def storage(self) -> Path:
        return self.folder / "results"

    @classmethod
    def made(cls, scenario: Scenario, under: Path | None = None) -> History:
        """A new history's folder (``close`` removes it): in ``under`` (a crash template's folder, which the
        template removes if the harness dies), else on its own."""
        if under is not None:
            under.mkdir(exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="history-", dir=under))
        else:
            folder = Path(scratch_folder(f"harness-history-{os.getpid()}-"))
        history = cls(folder, scenario.rerun_after)
        history.workdir.mkdir()
        history.storage.mkdir()
        return history

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @contextlib.contextmanager
    def entered(self) -> Iterator[Path]:
        """The history's working directory, as the run's own (kept for the next run)."""
        previous = os.getcwd()
        os.chdir(self.workdir)
        try:
            yield self.workdir
        finally:
            os.chdir(previous)

    @contextlib.contextmanager
    def results(self) -> Iterator[Path]:
        """The history's result storage: cache records and persisted results kept for the next run."""
        from prefect.results import _default_storages
        from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

        try:
            with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: self.storage}):
                yield self.storage
        finally:
            for key in [k for k in _default_storages if k[1] == str(self.storage)]:
                del _default_storages[key]

    def clock(self, real_time: bool) -> Clock:
        """The run's clock, going on from the last run's end and ``rerun_after`` (``Session`` sets its start)."""
        clock = Clock(real_time=real_time)
        clock.root.offset = self.skipped + (self.rerun_after if self.positions is not None else 0.0)
        return clock

    def resume(self, responder: Any) -> None:
        if self.positions is not None and hasattr(responder, "go_on"):
            responder.go_on(self.positions)

    def ended(self, clock: Clock, responder: Any) -> None:
        """A run ended: the next goes on from its clock and schedules."""
        self.went_on(clock.now() - clock.root.offset, clock.root.offset, getattr(responder, "positions", list)())

    def went_on(self, compute: float, skipped: float, positions: list[Any]) -> None:
        self.compute, self.skipped, self.positions = compute, skipped, positions


def run_history(
    session: Session,
    scenario: Scenario,
    *,
    real_time: bool | None = None,
    policy: Policy | None = None,
    crashing: Crashing | Served | None = None,
) -> Outcome:
    """Every flow run of ``scenario``: the first (crashing in a process of its own, with ``crash:``; or
    ``crashing``, started already, or served by Prefect's runner), then its reruns in this one; their outcome
    as one (``outcome.history_of``)."""
    if crashing is None and scenario.crash is not None:
        crashing = Crashing(session, scenario, real_time=real_time, policy=policy)
    history = crashing.history if crashing is not None else History.made(scenario)
    try:
        outcomes = [crashing.outcome()] if crashing is not None else []
        while len(outcomes) < scenario.runs:
            outcomes.append(session.run(scenario, real_time=real_time, policy=policy, history=history))
    finally:
        history.close()
    crashed = f"{scenario.crash.at} ({scenario.crash.how})" if scenario.crash is not None else ""
    return history_of(outcomes, crashed)


# -- in this process: the crashing run's -----------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the crashing process knew of its run when it sent this: enough to report it after a SIGKILL."""

    reached: bool  # the crash point was reached
    flow_run_id: Any
    tasks: tuple[TaskRun, ...]
    calls: tuple[Call, ...]
    hooks: tuple[tuple[str, str, str, Any], ...]
    compute: float
    skipped: float
    positions: list[Any]
    timeline: tuple[tuple[float, str], ...] = ()
    error: str = ""  # the run raised something else: its traceback
    # With Prefect's API watched: its requests, the flow runs the server created (id, answer heard), and per
    # task run the state of its last event that reached the server; with ``cancel:``, where it was cancelled.
    api_calls: tuple[Call, ...] = ()
    created: tuple[tuple[str, bool], ...] = ()
    delivered: tuple[tuple[Any, str], ...] = ()
    cancelled: str | None = None
    blocked: tuple[str, ...] = ()  # what the network guard refused the process


def snapshot_of(
    clock: Clock, recorder: Recorder, responder: Any, canceller: Any, line: Any, reached: bool, guard: Any = None
) -> Snapshot:
    """What a run's own process knows of it now; its time is the clock ``line``'s (the one that met the point),
    or the run's root line."""
    line = line if line is not None else clock.root
    with recorder._lock:
        hooks = tuple(recorder.hooks)
        timeline = [(at, f"{r.name}: {name}") for r in recorder.tasks.values() for at, _, name in r.history]
        timeline += [(at, f"flow: {name}") for at, name in recorder.flow_history]
    api = getattr(responder, "api", None)
    return Snapshot(
        api_calls=tuple(api.calls) if api is not None else (),
        created=tuple(api.created) if api is not None else (),
        delivered=tuple(api.delivered.items()) if api is not None else (),
        cancelled=canceller.cancelled() if canceller is not None else None,
        reached=reached,
        flow_run_id=recorder.flow_run_id,
        tasks=task_runs_of(recorder),
        calls=tuple(responder.calls),
        hooks=hooks,
        compute=clock.now(line) - line.offset,
        skipped=line.offset,
        positions=responder.positions() if hasattr(responder, "positions") else [],
        timeline=tuple(sorted(timeline)),
        blocked=tuple(guard.blocked) if guard is not None else (),
    )


class Crashing:
    """The first run of a history, under way in a process of its own that dies at ``scenario.crash``.

    Started at once (a sweep starts the next point's while this process runs
    the reruns of the last); ``outcome`` waits for it and reads back what the
    server kept of its flow run.
    """

    def __init__(
        self, session: Session, scenario: Scenario, *, real_time: bool | None = None, policy: Policy | None = None
    ) -> None:
        assert scenario.crash is not None and session.server is not None
        self.session, self.scenario = session, scenario
        template = Template.of(session)
        self.history = History.made(scenario, under=template.folder / "histories")
        self.started = time.perf_counter()
        job = {
            "scenario": scenario,
            "policy": policy,
            "real_time": session.real_time if real_time is None else real_time,
            "history": self.history,
        }
        try:
            self.child = template.start(job)
        except BaseException:
            self.history.close()
            raise

    def abandon(self) -> None:
        """Not waited for after all: its process is killed, then its history removed."""
        self.child.kill()
        self.child.collect(WAIT_S)  # until it is gone: nothing writes in the history after
        self.history.close()

    def outcome(self) -> Outcome:
        scenario, history, crash = self.scenario, self.history, self.scenario.crash
        assert crash is not None
        snapshot = self.child.collect(self.session.time_limit)
        wall = time.perf_counter() - self.started
        where = f"scenario {scenario.name!r} ({shown(scenario.path)}:{scenario.line_of('crash')})"
        if snapshot is None:
            log = Template.of(self.session).log
            raise CrashError(f"{where}: the crashing run ended before it reported anything:\n{_tail(log)}")
        if snapshot.error:
            raise CrashError(f"{where}: the crashing run failed in its process:\n{snapshot.error}")
        if not snapshot.reached:
            raise CrashError(
                f"{where}: the flow ended without reaching the crash point `{crash.at}` "
                f"(ran: {', '.join(dict.fromkeys(t.name for t in snapshot.tasks)) or 'no task'}; "
                f"calls: {len(snapshot.calls)})"
            )
        return outcome_of_snapshot(self.session, scenario, history, snapshot, wall)


def outcome_of_snapshot(
    session: Session,
    scenario: Scenario,
    history: History,
    snapshot: Snapshot,
    wall: float,
    hooks: tuple[tuple[str, str, str, Any], ...] = (),
    blocked: tuple[str, ...] = (),
) -> Outcome:
    """A run that ended in a process of its own, from the last ``snapshot`` it sent and what the server kept of
    it; ``hooks``: those run for it in this process (Prefect's runner runs a served flow's), and ``blocked``: the
    connections the network guard refused them."""
    from harness.scenario.resolve import resolve_flow

    history.went_on(snapshot.compute, snapshot.skipped, snapshot.positions)
    with session.api() as client:  # what the server kept of the flow run
        state = client.read_flow_run(snapshot.flow_run_id).state
    flow = StateInfo(state.type.value, state.name, state.message) if state else StateInfo("PENDING", "Pending", None)
    query = data_query(scenario, resolve_flow(scenario.flow, base=scenario.path.parent))
    sqlite_value, sqlite_error = read_rows(history.workdir, query)
    view = None
    if watches_api(scenario):  # the server's view of the killed run: what reached the server before it died
        delivered = dict(snapshot.delivered)
        reported = {t.id: (t.name, delivered.get(t.id)) for t in snapshot.tasks}
        with session.api():
            view = read_view(snapshot.flow_run_id, [i for i, _ in snapshot.created], reported)
    limits = None
    if scenario.concurrency_limits is not None:  # the slots the killed run left taken
        with session.api():
            limits = limits_after(scenario, [])
    return Outcome(
        scenario=scenario.name,
        flow=flow,
        tasks=snapshot.tasks,
        calls=snapshot.calls,
        counts=counts_of(scenario, snapshot.calls),
        result=None,
        wall_s=wall,
        virtual_s=snapshot.compute + snapshot.skipped,
        timeline=snapshot.timeline,
        sqlite=sqlite_value,
        sqlite_error=sqlite_error,
        seed=scenario.seed,
        waited_s=snapshot.skipped,
        hooks=hooks_of(list(snapshot.hooks) + list(hooks), snapshot.flow_run_id),
        api_calls=snapshot.api_calls,
        api_counts=api_counts(snapshot.api_calls),
        server=view,
        slots=limits or {},
        cancelled=snapshot.cancelled,
        blocked=(*snapshot.blocked, *blocked),
    )


class Template:
    """Where the crashing runs' processes come from: one process per session that imported Prefect, the harness
    and nothing more (no thread), forking one child per run.

    A child is forked ahead of need and warms up (the session's settings, a
    first client of the server) while the runs before it go on; the run
    takes it, and the next is forked. A child dies with the harness (and
    removes the history it was given); the template ends when the session
    closes or the harness is gone, so nothing outlives either.
    """

    def __init__(self, session: Session) -> None:
        assert session.server is not None
        server = session.server
        self.environment = server.environment()
        self.folder = Path(scratch_folder(f"harness-crash-{os.getpid()}-"))
        self.setup = {  # what each child warms up with: the session's server and options
            "server": {"api_url": server.api_url, "port": server.port},
            "environment": self.environment,
            "time_limit": session.time_limit,
            "transport": session.transport,
            "sys_path": list(sys.path),
            "harness": os.getpid(),
            "folder": str(self.folder),  # the template's own: it removes it as it ends
            # The session's folders, and the command's Prefect home: the template removes them too if the
            # harness dies without closing its session (killed), as the session would have.
            "owned": [str(p) for p in session.folders] + _command_home(),
        }
        self.log = self.folder / "crashing.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._spare: _Child | None = None
        self._start()  # importing takes a second or two: at once, beside whatever the session does meanwhile

    @classmethod
    def of(cls, session: Session) -> Template:
        """The session's template, started at its first call (``harness crashes`` calls it before the session's
        first run, so that it imports while the server starts)."""
        template = session.memo.get("crash-template")
        if template is None:
            template = session.memo["crash-template"] = cls(session)
            session.on_close(template.close)
        return template

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "harness.run._crashing", str(theirs.fileno())],
                env={**os.environ, **self.environment, "HARNESS_PARENT": str(os.getpid())},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a Ctrl-C reaches the harness, which ends it
            )
        theirs.close()
        self._socket = ours
        send(ours.fileno(), self.setup)

    def _fork(self) -> _Child:
        """A new child of the template, warming up for the next run (the template started again if it died)."""
        if self.process is None or self.process.poll() is not None:
            self._start()
        assert self._socket is not None
        job_read, job_write = os.pipe()
        report_read, report_write = os.pipe()
        try:
            socket.send_fds(self._socket, [b"fork"], [job_read, report_write])
        finally:
            os.close(job_read)
            os.close(report_write)
        return _Child(job_write, report_read, self.folder / "tmp")

    def start(self, job: dict[str, Any]) -> _Child:
        """Send ``job`` to a warm child (forking the next meanwhile); collect its snapshots from what it returns."""
        child, self._spare = self._spare, None
        if child is None or self.process is None or self.process.poll() is not None:
            if child is not None:
                child.close()  # its template is gone
            child = self._fork()
        self._spare = self._fork()  # warming up while this one runs
        try:
            child.send(job)
        except (OSError, EOFError):  # its template died meanwhile: once more, from a new one
            child.close()
            child = self._fork()
            child.send(job)
        return child

    def close(self) -> None:
        """Stop the spare child and the template; remove their folder. Safe to call twice."""
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()  # no job: it exits
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(b"close")  # closed by the session: the session removes its own folders
            sock.close()  # the template reads the end of its input: it exits
        process, self.process = self.process, None
        if process is not None:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class _Child:
    """One forked child: its job pipe (written here), its report pipe (read here)."""

    def __init__(self, jobs: int, reports: int, temporary: Path) -> None:
        self.jobs, self.reports, self.temporary = jobs, reports, temporary
        self.pid: int | None = None

    def send(self, job: dict[str, Any]) -> None:
        """Its pid (the first thing it sends, at once), then ``job``."""
        self.pid = receive(self.reports)
        send(self.jobs, job)
        os.close(self.jobs)
        self.jobs = -1

    def collect(self, time_limit: float | None) -> Snapshot | None:
        """Its snapshots until it is gone (or killed at ``time_limit``): the last, or None if it sent none."""
        try:
            return self._collect(time_limit)
        finally:
            self.close()
            if self.pid is not None:  # gone: its temporary files (a session's results, its wire's certificates)
                shutil.rmtree(self.temporary / str(self.pid), ignore_errors=True)

    def _collect(self, time_limit: float | None) -> Snapshot | None:
        deadline = time.monotonic() + time_limit if time_limit else None
        last: Snapshot | None = None
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ready, _, _ = select.select([self.reports], [], [], wait)
            if not ready:  # past the time limit: it is killed, what it sent is what there is
                self.kill()
                return last
            try:
                message = receive(self.reports)
            except EOFError:
                return last
            last = message

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        for fd in (self.jobs, self.reports):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.jobs = self.reports = -1


def _command_home() -> list[str]:
    """The ``harness`` command's private Prefect home (``environ.private_prefect_home``), if it has one."""
    home = os.environ.get("PREFECT_HOME", "")
    return [home] if Path(home).name.startswith("harness-home-") else []


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- in the crashing process -----------------------------------------------------------------------


@dataclass
class Trigger(Point):
    """In the crashing process: dies at the scenario's crash point, having sent what it knew first.

    A point names the N-th run of a task in the order the flow called or
    submitted its runs (the order ``expect.tasks`` lists them in, and the
    sweep numbers them in); a run that never reaches the point (it failed
    before returning, or was served from a cache) is not another's turn.
    """

    crash: Crash
    report: Callable[[Snapshot], None]
    api: Callable[[], Any] = field(default=lambda: _client())  # the server's client (``after_task`` polls it)
    calls: int = 0
    fired: threading.Event = field(default_factory=threading.Event)
    snapshot: Callable[[bool], Snapshot] | None = None
    clock: Clock | None = None
    recorder: Recorder | None = None
    line: Any = None  # the clock line that met the point
    canceller: Any = None  # the run's ``cancel:``, if any (``Session`` sets it): where it was cancelled
    slots: Any = None  # the run's ``Slots`` with ``concurrency_limits`` (``Session`` sets it)
    guard: Any = None  # the run's network guard (``Session`` sets it): what it refused
    lock: threading.Lock = field(default_factory=threading.Lock)  # one snapshot at a time, in order

    @contextlib.contextmanager
    def armed(self, clock: Clock, recorder: Recorder, responder: Any) -> Iterator[None]:
        """The point wired into Prefect's task engine, the responder and the clock, for one run."""

        def snapshot(reached: bool) -> Snapshot:
            return snapshot_of(clock, recorder, responder, self.canceller, self.line, reached, self.guard)

        self.snapshot = snapshot  # the clock and recorder are set as the point is wired
        recorder.listeners.append(self._after_fire)  # Prefect may end the process as it handles a signal
        with self.wired(clock, recorder, responder):
            yield

    @property
    def point(self) -> CrashAt:
        return self.crash.at

    def _after_fire(self) -> None:
        """Once the point is passed, each hook and state Prefect records is sent at once: Prefect's handling of
        SIGTERM ends the process itself (it signals it again once the run is marked Crashed)."""
        if self.fired.is_set() and self.snapshot is not None:
            with self.lock:
                self.report(self.snapshot(True))

    def fire(self, engine: Any = None) -> None:
        """Send what is known, then die as ``how`` says (once: a point is reached once)."""
        with self.lock:
            if self.fired.is_set():
                return
            if self.crash.at.point == "after_task" and engine is not None and not self._recorded(engine.task_run.id):
                self.report(self._failed(f"the server did not record the task run's final state in {WAIT_S:g} s"))
                os._exit(1)
            self.line = self.clock.line() if self.clock is not None else None
            self.fired.set()
            assert self.snapshot is not None
            self.report(self.snapshot(True))
        if self.slots is not None and self.line is not None:  # the server's leases see time reach the death
            self.slots.move(self.slots.target(self.line))
        os.kill(os.getpid(), SIGNALS[self.crash.how])
        if self.crash.how == "kill":
            time.sleep(WAIT_S)  # gone before this returns
        # A handled signal lands on the main thread, at once when this is it; a submitted task run's thread
        # goes on meanwhile, as it would.

    def _failed(self, why: str) -> Snapshot:
        assert self.snapshot is not None
        return dataclasses.replace(self.snapshot(False), error=why)

    def _recorded(self, task_run_id: Any) -> bool:
        """Wait until the server has the task run's final state (its events delivered and recorded)."""
        deadline = time.monotonic() + WAIT_S
        with self.api() as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):  # not created on the server yet
                    state = client.read_task_run(task_run_id).state
                    if state is not None and state.is_final():
                        return True
                time.sleep(0.01)
        return False


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)
