"""What travels back from a worker: a job's value, or ``Failed``; and the job of ``harness run``.

A job is a module-level function called as ``fn(session, *args)``; its value
must pickle. ``run_case`` is one scenario case through ``run_scenario``, as
``harness run`` runs it serially.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from dataclasses import dataclass
from typing import Any

from harness.checking.expectations import plain
from harness.checking.verdict import Result, run_scenario
from harness.parallel.refs import ScenarioRef
from harness.run.session import Session


@dataclass(frozen=True, slots=True)
class Failed:
    """A job that returned nothing: it raised, or the worker running it was lost."""

    error: str  # "TypeName: message", as a serial run reports an exception
    where: str  # the worker, e.g. "worker process 1234 on host"

    @classmethod
    def of(cls, exc: BaseException, where: str) -> Failed:
        return cls(f"{type(exc).__name__}: {exc}", where)

    def __str__(self) -> str:
        return f"{self.error} ({self.where})"


def run_case(session: Session, ref: ScenarioRef, verbose: bool = False) -> Result:
    """One case of ``harness run``: run and judge it; an exception is the case's error, as serially."""
    label, scenario, policy = ref.case()
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with quiet:  # the flows' own prints would break up the table
            return run_scenario(session, scenario, policy, label)
    except Exception as exc:  # a harness error on one scenario must not hide the others
        return Result.of(scenario, None, [], error=f"{type(exc).__name__}: {exc}", label=label)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(plain(value), default=repr))


def portable(value: Any) -> Any:
    """``value`` with what does not pickle made plain: a flow's result as its JSON report shows it."""
    if isinstance(value, Result):
        outcome = value.outcome
        if outcome is not None:
            outcome = dataclasses.replace(outcome, result=_jsonable(outcome.result))
        mismatches = tuple(
            dataclasses.replace(m, expected=_jsonable(m.expected), observed=_jsonable(m.observed))
            for m in value.mismatches
        )
        return dataclasses.replace(value, outcome=outcome, mismatches=mismatches)
    return value
