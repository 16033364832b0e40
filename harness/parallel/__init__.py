"""Spreading runs over processes and machines: the same jobs, the same values, in the same order.

A job is a module-level function called as ``fn(session, *args)`` on a
harness session; scenarios travel as ``ScenarioRef`` (file, name, case) and
are loaded again where they run. ``Serial`` calls jobs in this process, on
its session; ``Local`` on N worker processes of this machine; ``Dask`` (in
``harness.parallel.cluster``) on the workers of a Dask cluster. A worker is
``harness.parallel._worker``: one session, its own Prefect server, jobs run
one at a time on its main thread. Values come back in job order whatever
order they finished in; a job whose worker was lost runs once more, then is
reported as ``Failed``, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from harness.parallel.jobs import Failed, run_case
from harness.parallel.local import Local
from harness.parallel.refs import ScenarioRef
from harness.run.session import Session


class Runner(Protocol):
    """Runs jobs somewhere and returns their values (or ``Failed``) in job order."""

    def map(
        self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], tick: Callable[[], None] = ...
    ) -> list[Any]: ...

    def close(self) -> None: ...


class Serial:
    """Jobs called one after another in this process, on ``session``; an exception propagates."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def map(
        self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], tick: Callable[[], None] = lambda: None
    ) -> list[Any]:
        out = []
        for job in jobs:
            out.append(fn(self.session, *job))
            tick()
        return out

    def close(self) -> None:
        self.session.close()


__all__ = ["Failed", "Local", "Runner", "ScenarioRef", "Serial", "run_case"]
