"""The crashing run's program: ``python -m harness.run._crashing REPORT_FD PARENT_PID``.

Started ahead of need by ``crash.Spare``: it imports Prefect and the
harness, then waits for its one job on standard input (a scenario, its
history and the session's server). It runs the flow on its main thread (so
that Prefect installs its SIGTERM handler), with the crash point armed; the
point sends a snapshot through REPORT_FD and signals this process. When it
exits by a handled signal, or because the run ended first, it sends a last
snapshot. If the process that started it is gone, it removes the history's
folder and exits: killing the harness leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any


def _exit_with_parent(parent: int, folder: list[Path]) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    for path in folder:
        shutil.rmtree(path, ignore_errors=True)
    os._exit(1)


def main() -> None:
    report_fd, parent = int(sys.argv[1]), int(sys.argv[2])
    folders: list[Path] = []
    threading.Thread(target=_exit_with_parent, args=(parent, folders), daemon=True).start()

    import prefect.flow_engine  # noqa: F401  (imported while waiting: the job starts at once)
    import prefect.task_engine  # noqa: F401

    from harness.run.crash import Snapshot, Trigger
    from harness.run.pipes import receive, send
    from harness.run.session import Session

    try:
        job: dict[str, Any] = receive(0)
    except EOFError:  # never given a job: the session closed
        return
    folders.append(job["history"].folder)
    sys.path[:] = job["sys_path"]
    scenario = job["scenario"]
    session = Session(job["real_time"], job["time_limit"], job["transport"], server=_Given(job))

    sending = threading.Lock()  # snapshots come from the flow's threads: one message at a time on the pipe

    def report(snapshot: Snapshot) -> None:
        with sending:
            send(report_fd, snapshot)

    trigger = Trigger(scenario.crash, report)
    error = ""
    try:
        session.run(scenario, policy=job["policy"], history=job["history"], crash=trigger)
    except BaseException as exc:  # noqa: BLE001 (the signal's own ending: TerminationSignal, KeyboardInterrupt)
        if not trigger.fired.is_set():
            error = "".join(traceback.format_exception(exc))
    if trigger.snapshot is not None:
        report(dataclasses.replace(trigger.snapshot(True, trigger.fired.is_set()), error=error))
    elif error:
        report(Snapshot(True, False, None, (), (), (), 0.0, 0.0, [], error=error))
    session.close()  # Prefect's events reach the server, as at a process's exit
    os.close(report_fd)
    os._exit(0)


class _Given:
    """The session's server, run by the harness: used, never started or stopped here."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.api_url = job["server"]["api_url"]
        self.port = job["server"]["port"]
        self._environment = job["environment"]
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
