"""The crashing runs' template: ``python -m harness.run._crashing SOCKET_FD``.

Started once per session by ``crash.Template``. It reads the session's
setup from its socket, imports Prefect and the harness (no thread starts),
then forks one child per request, each given its job and report pipes over
the socket (``socket.recv_fds``). It exits when the socket closes: the
session closed, or the harness is gone.

A child warms up (the session's settings, a first client of the server),
sends its pid, and waits for its job: a scenario, its history and how to
run it. It runs the flow on its main thread (so that Prefect installs its
SIGTERM handler) with the crash point armed; the point sends a snapshot and
signals the process. What Prefect records after a handled signal is sent as
it comes (Prefect ends the process itself); if the run ends otherwise, a
last snapshot says how. A child whose harness is gone removes the history's
folder and exits: killing the harness leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from harness.run.pipes import receive, send


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        setup: dict[str, Any] = receive(sock.fileno())
    except EOFError:
        return
    sys.path[:] = setup["sys_path"]
    import prefect.flow_engine  # noqa: F401  (imported once, here: each child starts with it)
    import prefect.task_engine  # noqa: F401

    import harness.run.crash  # noqa: F401
    import harness.run.session  # noqa: F401

    assert threading.active_count() == 1, "a process forks safely only before any thread starts"
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they end
    children: list[int] = []
    closed = False
    try:
        closed = serve(sock, setup, children)
    finally:
        # Its children end with the session or the harness (their job pipes close, or they see it gone): once
        # they have, nothing writes in the folder (their histories and temporary files) any more.
        deadline = time.monotonic() + GONE_S
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(setup["folder"], ignore_errors=True)
        if not closed:  # the harness is gone without closing its session: its folders go too
            for folder in setup["owned"]:
                shutil.rmtree(folder, ignore_errors=True)


GONE_S = 10.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def serve(sock: socket.socket, setup: dict[str, Any], children: list[int]) -> bool:
    """Fork a child per request until the socket closes; whether the session closed it (else the harness is
    gone)."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 16, 2)
        except OSError:
            return False
        if message == b"close":
            return True
        if not message:
            return False
        pid = os.fork()
        if pid == 0:
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                child(setup, *fds)
            finally:
                os._exit(0)
        children[:] = [p for p in children if _alive(p)] + [pid]
        for fd in fds:
            os.close(fd)


def child(setup: dict[str, Any], jobs: int, reports: int) -> None:
    from harness.run.crash import Snapshot, Trigger
    from harness.run.session import Session

    send(reports, os.getpid())  # first: the harness can end this process from now on
    own = Path(setup["folder"]) / "tmp" / str(os.getpid())  # its temporary files, removed once it is gone
    own.mkdir(parents=True)
    tempfile.tempdir = os.environ["TMPDIR"] = str(own)
    folders: list[Path] = [own]
    threading.Thread(target=_exit_with(setup["harness"], folders), daemon=True).start()
    session = Session(False, setup["time_limit"], setup["transport"], server=_Given(setup))
    with contextlib.suppress(Exception), session.api() as client:  # warm while the runs before it go on
        client.hello()
        from prefect.events.worker import EventsWorker

        EventsWorker.instance()  # its websocket to the server, opened once
    try:
        job: dict[str, Any] = receive(jobs)
    except EOFError:  # never given a job: the session closed
        session.close()
        return
    folders.append(job["history"].folder)
    sending = threading.Lock()  # snapshots come from the flow's threads: one message at a time on the pipe

    def report(snapshot: Snapshot) -> None:
        with sending:
            send(reports, snapshot)

    trigger = Trigger(job["scenario"].crash, report)
    error = ""
    try:
        session.run(
            job["scenario"], real_time=job["real_time"], policy=job["policy"], history=job["history"], crash=trigger
        )
    except BaseException as exc:  # noqa: BLE001 (the signal's own ending: TerminationSignal, KeyboardInterrupt)
        if not trigger.fired.is_set():
            error = "".join(traceback.format_exception(exc))
    if trigger.snapshot is not None:
        with trigger.lock:
            report(dataclasses.replace(trigger.snapshot(trigger.fired.is_set()), error=error))
    elif error:
        report(Snapshot(False, None, (), (), (), 0.0, 0.0, [], error=error))
    session.close()  # Prefect's events reach the server, as at a process's exit


def _exit_with(harness: int, folders: list[Path]) -> Any:
    def watch() -> None:
        while True:
            try:
                os.kill(harness, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        for path in folders:
            shutil.rmtree(path, ignore_errors=True)
        os._exit(1)

    return watch


class _Given:
    """The session's server, run by the harness: used, never started or stopped here."""

    def __init__(self, setup: dict[str, Any]) -> None:
        self.api_url = setup["server"]["api_url"]
        self.port = setup["server"]["port"]
        self._environment = setup["environment"]
        self.started_at = self.ready_at = time.perf_counter()

    @property
    def home(self) -> Path:
        return Path(self._environment["PREFECT_HOME"])

    def environment(self) -> dict[str, str]:
        return dict(self._environment)

    def start(self) -> None:
        pass

    def wait(self, timeout: float = 60.0) -> None:
        pass

    def stop(self) -> None:
        pass


if __name__ == "__main__":
    main()
