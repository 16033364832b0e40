"""N worker processes on this machine, each with its own session and Prefect server.

The servers are forked from one forkserver, which imports Prefect's server
once for all of them.

Jobs are handed out one at a time to whichever worker is free, and their
values put back in job order. A worker that dies is replaced and its job run
once more; a job that loses two workers is reported as ``Failed``.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from harness._errors import WorkerError
from harness.parallel._process import WorkerProcess, session_options
from harness.parallel.jobs import Failed
from harness.run.environ import private_prefect_home
from harness.run.forked import Forkserver

ATTEMPTS = 2  # workers a job may lose before it is reported as failed


class Local:
    """A pool of ``workers`` harness worker processes; they start (and boot their servers) at once."""

    def __init__(self, workers: int, *, verbose: bool = False, **session: Any) -> None:
        """``session``: the arguments of each worker's ``Session`` (``real_time``, ``time_limit``...)."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.size = workers
        self._options = session_options(verbose, **session)
        self._home = private_prefect_home()
        self._ever_ready = False
        self._stillborn = 0  # workers that died before they could run a job, while none ever could
        self._workers: list[WorkerProcess] = []
        self._forkserver: Forkserver | None = None
        try:
            if self._options["start_server"]:
                # The private PREFECT_HOME is its to remove too, should this process be killed.
                self._forkserver = Forkserver(also=Path(os.environ["PREFECT_HOME"]) if self._home else None)
            for _ in range(workers):
                self._workers.append(WorkerProcess(self._options, self._forkserver))
        except BaseException:
            self.close()  # the workers (and servers) already started, and the private PREFECT_HOME
            raise

    def __enter__(self) -> Local:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(
        self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], tick: Callable[[], None] = lambda: None
    ) -> list[Any]:
        """``fn(session, *job)`` for every job, spread over the workers; values (or ``Failed``) in job order."""
        results: list[Any] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        losses = [0] * len(jobs)
        idle = list(reversed(self._workers))
        busy: list[WorkerProcess] = []
        while pending or busy:
            while pending and idle:
                worker, i = idle.pop(), pending.popleft()
                with contextlib.suppress(OSError):  # when it died before the job reached it, its reply says so
                    worker.submit(i, fn, jobs[i])
                busy.append(worker)
            readable = set(wait([w.fileno() for w in busy]))
            for worker in [w for w in busy if w.fileno() in readable]:
                try:
                    message = worker.next_message()
                except EOFError:
                    busy.remove(worker)
                    i = worker.job
                    losses[i] += 1
                    if losses[i] < ATTEMPTS:
                        pending.appendleft(i)
                    else:
                        results[i] = Failed(f"WorkerError: its worker process died, {ATTEMPTS} times", worker.where)
                        tick()
                    self._replace(worker, idle)
                    continue
                if message is None:  # it said it is ready; its job's reply is still to come
                    continue
                busy.remove(worker)
                job_id, _, value = message
                self._ever_ready = True
                results[job_id] = value
                idle.append(worker)
                tick()
        return results

    def _replace(self, dead: WorkerProcess, idle: list[WorkerProcess]) -> None:
        """A fresh worker in place of a dead one (at most two per job: bounded by the jobs)."""
        dead.terminate()
        if not self._ever_ready and not dead.ready:
            self._stillborn += 1
            if self._stillborn >= 2 * self.size:
                raise WorkerError(
                    f"{self._stillborn} worker processes died before they could run anything; "
                    f"the last exited with code {dead.process.returncode} (its error is on stderr above)"
                )
        self._workers.remove(dead)
        fresh = WorkerProcess(self._options, self._forkserver)
        self._workers.append(fresh)
        idle.append(fresh)

    def close(self) -> None:
        """Stop every worker (each closes its session and server); safe to call twice."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()  # all of them first: they close their sessions side by side
        for worker in workers:
            worker.close()
        if self._forkserver is not None:
            self._forkserver.close()
            self._forkserver = None
        if self._home is not None:
            self._home()
            self._home = None
