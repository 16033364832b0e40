"""Comparing fault-tolerance strategies: every scenario x strategy x seed, measured.

Scripted scenarios run once per strategy; scenarios with random draws (chaos,
random latency) run once per seed 0..N-1. Each cell of the comparison carries
the numbers a person acts on: success rate with its 95% Wilson interval,
attempts, calls, wasted calls, time to finish and, for SQLite flows, rows
missing or duplicated against a fault-free run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness._errors import ScenarioTimeout
from harness.checking.baseline import fault_free, row_difference
from harness.policies.conditions import can_succeed_on_retry
from harness.run.session import Outcome, Session
from harness.scenario.model import Scenario
from harness.scenario.strategy import Policy


@dataclass(frozen=True, slots=True)
class Cell:
    """One scenario under one strategy, over its seeds."""

    scenario: str
    strategy: str
    runs: int
    successes: int
    success_rate: float
    success_ci: tuple[float, float]
    attempts_mean: float
    attempts_p95: float
    calls: dict[str, float]
    calls_mean: float
    wasted_calls: float
    virtual_s_mean: float
    virtual_s_p95: float
    rows_missing: float | None
    rows_duplicated: float | None
    wall_s: float = field(compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "strategy": self.strategy,
            "runs": self.runs,
            "successes": self.successes,
            "success_rate": round(self.success_rate, 4),
            "success_ci": [round(self.success_ci[0], 4), round(self.success_ci[1], 4)],
            "attempts_mean": round(self.attempts_mean, 3),
            "attempts_p95": self.attempts_p95,
            "calls": {k: round(v, 3) for k, v in self.calls.items()},
            "calls_mean": round(self.calls_mean, 3),
            "wasted_calls": round(self.wasted_calls, 3),
            "virtual_s_mean": round(self.virtual_s_mean, 2),
            "virtual_s_p95": round(self.virtual_s_p95, 2),
            "rows_missing": None if self.rows_missing is None else round(self.rows_missing, 3),
            "rows_duplicated": None if self.rows_duplicated is None else round(self.rows_duplicated, 3),
            "wall_s": round(self.wall_s, 3),
        }


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def is_random(scenario: Scenario) -> bool:
    """True when a run draws at random (chaos or random latency), so seeds matter."""
    for endpoint in scenario.endpoints:
        if endpoint.chaos is not None:
            return True
        steps = [*endpoint.responses]
        if any(s.latency is not None and s.latency.kind != "fixed" for s in steps):
            return True
    return False


def wasted_calls(outcome: Outcome) -> int:
    """Calls a task run made after an answer that cannot succeed on retry (a 404, a 400, a 301...)."""
    hopeless: set[tuple[Any, str | None]] = set()
    wasted = 0
    for call in outcome.calls:
        key = (call.task_run, call.endpoint)
        if key in hopeless:
            wasted += 1
        elif not can_succeed_on_retry(call):
            hopeless.add(key)
    return wasted


def run_cell(
    session: Session,
    scenario: Scenario,
    policy: Policy,
    seeds: Iterable[int],
    baseline: Any,
    tick: Callable[[], None] = lambda: None,
) -> Cell:
    """Run ``scenario`` under ``policy`` once per seed and summarise."""
    outcomes: list[Outcome] = []
    hung = 0
    for seed in seeds:
        run = scenario.model_copy(update={"seed": seed}) if seed != scenario.seed else scenario
        try:
            outcomes.append(session.run(run, policy=policy))
        except ScenarioTimeout:
            hung += 1  # a run past its wall-clock limit counts as a failure, and adds no other figure
        tick()
    if not outcomes:
        raise ScenarioTimeout(f"every run of {scenario.name!r} under {policy.name!r} ran past its wall-clock limit")
    n = len(outcomes) + hung
    successes = sum(o.flow.type == "COMPLETED" and not o.unmatched and not o.blocked for o in outcomes)
    ran = len(outcomes)
    attempts = [float(sum(t.run_count for t in o.tasks)) for o in outcomes]
    virtual = [o.waited_s for o in outcomes]
    endpoints = list(outcomes[0].counts)
    calls = {k: sum(o.counts.get(k, 0) for o in outcomes) / ran for k in endpoints}
    missing = duplicated = None
    if scenario.expect.sqlite is not None and baseline is not None:
        diffs = [row_difference(o.sqlite, baseline) for o in outcomes]
        if all(d is not None for d in diffs):
            missing = sum(d[0] for d in diffs if d) / ran
            duplicated = sum(d[1] for d in diffs if d) / ran
    return Cell(
        scenario=scenario.name,
        strategy=policy.name,
        runs=n,
        successes=successes,
        success_rate=successes / n,
        success_ci=wilson(successes, n),
        attempts_mean=sum(attempts) / ran,
        attempts_p95=p95(attempts),
        calls=calls,
        calls_mean=sum(calls.values()),
        wasted_calls=sum(wasted_calls(o) for o in outcomes) / ran,
        virtual_s_mean=sum(virtual) / ran,
        virtual_s_p95=p95(virtual),
        rows_missing=missing,
        rows_duplicated=duplicated,
        wall_s=sum(o.wall_s for o in outcomes),
    )


def plan(scenarios: list[Scenario], seeds: int) -> list[tuple[Scenario, list[int]]]:
    """Which seeds each scenario runs: all of 0..seeds-1 when it draws at random, else its own."""
    return [(s, list(range(seeds)) if is_random(s) else [s.seed]) for s in scenarios]


def compare(
    session: Session,
    scenarios: list[Scenario],
    policies: list[Policy],
    seeds: int,
    tick: Callable[[], None] = lambda: None,
) -> list[Cell]:
    """Every scenario x policy x seed; one ``Cell`` per scenario and policy."""
    cells = []
    for scenario, scenario_seeds in plan(scenarios, seeds):
        baseline = None
        if scenario.expect.sqlite is not None:
            baseline = session.run(fault_free(scenario)).sqlite
        for policy in policies:
            cells.append(run_cell(session, scenario, policy, scenario_seeds, baseline, tick))
    return cells
