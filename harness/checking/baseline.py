"""The fault-free baseline: what a run stores when no endpoint misbehaves, for the data invariants.

``no_data_loss`` and ``no_duplicates`` compare the rows a run stored with
the rows a fault-free run of the same scenario stores: every endpoint serving
only its healthy answer (chaos' ``otherwise``, else its last plain 2xx), at
once. The baseline runs once per session and scenario, then is reused.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.run.session import Session
from harness.scenario.model import Endpoint, Scenario, Step
from harness.scenario.strategy import Policy

DATA_INVARIANTS = ("no_data_loss", "no_duplicates")


def judges_data(scenario: Scenario) -> bool:
    """Whether the scenario's expectations need the fault-free baseline."""
    return any(inv.kind in DATA_INVARIANTS for inv in scenario.expect.invariants)


def healthy_step(endpoint: Endpoint) -> Step:
    """What the endpoint serves when nothing goes wrong: chaos' ``otherwise``, else its last plain 2xx answer."""
    if endpoint.chaos is not None:
        return endpoint.chaos.otherwise
    answers = [s for s in endpoint.responses if not s.fault and not s.malformed and 200 <= (s.status or 200) < 300]
    return answers[-1] if answers else endpoint.responses[-1]


def fault_free(scenario: Scenario) -> Scenario:
    """The scenario with every endpoint serving only its healthy answer, at once, every function target calling
    through, run once without a crash."""
    endpoints = tuple(
        Endpoint(request=e.request, responses=(healthy_step(e).model_copy(update={"latency": None, "times": 1}),))
        for e in scenario.endpoints
    )
    return scenario.model_copy(update={"endpoints": endpoints, "functions": (), "crash": None, "reruns": None})


def baseline_rows(session: Session, scenario: Scenario, policy: Policy | None = None) -> Any:
    """The data query's result (a count or rows) in a fault-free run of ``scenario``; once per session."""
    baseline = fault_free(scenario).model_copy(update={"strategies": {}})
    key = (
        "baseline",
        repr((str(scenario.path.parent), baseline.flow, baseline.parameters, baseline.seed)),
        repr((baseline.endpoints, scenario.expect.sqlite, policy)),  # function targets: none, in every baseline
    )
    if key not in session.memo:
        outcome = session.run(baseline, policy=policy)
        session.memo[key] = None if outcome.sqlite_error else outcome.sqlite
    return session.memo[key]


def _rows(value: Any) -> list[Any] | float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [tuple(r) if isinstance(r, list) else r for r in value]
    return None


def row_difference(observed: Any, baseline: Any) -> tuple[float, float] | None:
    """(rows missing, rows duplicated) of ``observed`` against the fault-free ``baseline``."""
    got, want = _rows(observed), _rows(baseline)
    if want is None:
        return None
    if got is None:
        got = 0.0 if isinstance(want, float) else []
    if isinstance(want, float) and isinstance(got, float):
        return (max(want - got, 0.0), max(got - want, 0.0))
    if isinstance(want, list) and isinstance(got, list):
        have, need = Counter(got), Counter(want)
        return (float(sum((need - have).values())), float(sum((have - need).values())))
    return None
