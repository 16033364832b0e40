"""Runs on a Dask distributed cluster: one harness worker process per Dask worker, kept for its life.

Dask runs tasks on worker threads, but a flow run must be on a main thread
(Prefect's ``timeout_seconds`` uses SIGALRM only there; respx and the network
guard are process-wide). So a worker plugin starts, once per Dask worker, the
same harness worker process a local pool uses (one session, its own Prefect
server) and feeds it the jobs over a pipe, one at a time; it is closed with
the Dask worker, or when the command unregisters the plugin at its end.

Every Dask worker needs the same environment as the command: the harness and
the flows importable, the scenario files at the same paths. A worker lost
mid-run has its jobs rerun elsewhere by the scheduler; a job that Dask gives
up on, or that cannot load on a worker, comes back as ``Failed``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, as_completed, get_worker

from harness._errors import WorkerError
from harness.parallel._process import WorkerProcess, session_options
from harness.parallel.jobs import Failed
from harness.parallel.refs import SAME_ENVIRONMENT

PLUGIN = "prefect-fault-harness"
ATTEMPTS = 2  # harness processes a job may lose on one Dask worker before it is reported as failed


class HarnessPlugin(WorkerPlugin):
    """Keeps one harness worker process per Dask worker: started at setup, closed at teardown."""

    name = PLUGIN

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self._process: WorkerProcess | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.options = state["options"]  # unpickled on the Dask worker: a process and a lock of its own
        self._process = None
        self._lock = threading.Lock()

    def setup(self, worker: Any) -> None:
        with self._lock:
            if self._process is None:
                self._process = WorkerProcess(self.options)  # its server boots before the first task arrives

    def teardown(self, worker: Any) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.close()

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """One job on this worker's harness process (one at a time, whatever the worker's threads)."""
        where = "a harness worker process"
        with self._lock:
            for _ in range(ATTEMPTS):
                if self._process is None:
                    self._process = WorkerProcess(self.options)
                try:
                    return self._process.call(fn, args)[1]
                except (EOFError, OSError):
                    where = self._process.where
                    self._process.terminate()
                    self._process = None
        return Failed(f"WorkerError: the harness process died running it, {ATTEMPTS} times", where)


def on_worker(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """The Dask task: hand the job to this worker's harness process."""
    plugin = get_worker().plugins.get(PLUGIN)
    if not isinstance(plugin, HarnessPlugin):
        raise WorkerError("the harness worker plugin is not registered on this Dask worker")
    return plugin.run(fn, args)


class Dask:
    """Jobs on a Dask cluster at ``address``, or on a ``LocalCluster`` of ``workers`` processes for "local"."""

    def __init__(
        self,
        address: str,
        workers: int = 1,
        *,
        verbose: bool = False,
        **session: Any,
    ) -> None:
        """``session``: the arguments of each worker's ``Session`` (``real_time``, ``time_limit``...)."""
        self._cluster: LocalCluster | None = None
        self.client: Client | None = None
        if address == "local":
            self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = Client(self._cluster)  # type: ignore[no-untyped-call]
        else:
            self.client = Client(address)  # type: ignore[no-untyped-call]
        try:
            self.client.register_plugin(HarnessPlugin(session_options(verbose, **session)), name=PLUGIN)
        except Exception as exc:
            self.close()
            raise WorkerError(
                f"the harness worker plugin could not start on the Dask workers: {exc}; {SAME_ENVIRONMENT}"
            ) from exc

    def __enter__(self) -> Dask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(
        self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], tick: Callable[[], None] = lambda: None
    ) -> list[Any]:
        """``fn(session, *job)`` for every job on the cluster; values (or ``Failed``) in job order."""
        client = self.client
        if client is None:
            raise RuntimeError("the Dask pool is closed")
        futures = [client.submit(on_worker, fn, job, pure=False) for job in jobs]
        position = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(jobs)
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            i = position[future.key]
            if future.status == "finished":
                results[i] = future.result()
            else:
                results[i] = _failed(future.exception())
            tick()
        return results

    def close(self) -> None:
        """Close every worker's harness process, then the client (and the local cluster)."""
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a worker already gone has nothing left to close
                client.unregister_worker_plugin(PLUGIN)  # type: ignore[no-untyped-call]
            client.close()  # type: ignore[no-untyped-call]
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.close()


def _failed(exc: BaseException | None) -> Failed:
    """Why Dask returned no value, in the terms of this job."""
    if isinstance(exc, KilledWorker):
        return Failed(f"WorkerError: the Dask workers running it were lost ({exc})", "dask")
    if isinstance(exc, ModuleNotFoundError | ImportError):
        return Failed(f"WorkerError: {type(exc).__name__}: {exc}; {SAME_ENVIRONMENT}", "a Dask worker")
    if exc is None:
        return Failed("WorkerError: the task was cancelled", "dask")
    return Failed.of(exc, "a Dask worker")
