"""Comparing fault-tolerance strategies: every scenario x strategy x seed, measured.

Scripted scenarios run once per strategy; scenarios with random draws (chaos,
random latency) run once per seed 0..N-1. Each cell of the comparison carries
the numbers a person acts on: success rate with its 95% Wilson interval,
attempts, calls, wasted calls, time to finish and, for SQLite flows, rows
missing or duplicated against a fault-free run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness._errors import ScenarioTimeout, WorkerError
from harness.checking.baseline import baseline_rows, row_difference
from harness.parallel import Failed, Runner, ScenarioRef, Serial
from harness.policies.conditions import can_succeed_on_retry
from harness.run.outcome import Outcome
from harness.run.session import Session
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


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What a cell keeps of one run: plain data, so that it travels back from a worker process."""

    hung: bool = False  # ran past its wall-clock limit: a failure, and no other figure
    success: bool = False
    attempts: float = 0.0
    waited_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    wasted: int = 0
    judged_rows: bool = False  # the scenario reads rows and the fault-free run stored some
    rows: tuple[float, float] | None = None  # (missing, duplicated) against the fault-free run
    wall_s: float = 0.0

    @classmethod
    def of(cls, outcome: Outcome, scenario: Scenario, baseline: Any) -> RunFigures:
        judged = scenario.expect.sqlite is not None and baseline is not None
        return cls(
            success=outcome.flow.type == "COMPLETED" and not outcome.unmatched and not outcome.blocked,
            attempts=float(sum(t.run_count for t in outcome.tasks)),
            waited_s=outcome.waited_s,
            counts=dict(outcome.counts),
            wasted=wasted_calls(outcome),
            judged_rows=judged,
            rows=row_difference(outcome.sqlite, baseline) if judged else None,
            wall_s=outcome.wall_s,
        )


def run_once(session: Session, scenario: Scenario, policy: Policy, seed: int, baseline: Any) -> RunFigures:
    """One run of ``scenario`` under ``policy`` with ``seed``; a run past its time limit is ``hung``."""
    run = scenario.model_copy(update={"seed": seed}) if seed != scenario.seed else scenario
    try:
        outcome = session.run(run, policy=policy)
    except ScenarioTimeout:
        return RunFigures(hung=True)  # a run past its wall-clock limit counts as a failure, and adds no other figure
    return RunFigures.of(outcome, scenario, baseline)


def run_job(session: Session, ref: ScenarioRef, policy: Policy, seed: int) -> RunFigures:
    """The job a runner runs for one seed of one cell (the fault-free baseline once per session)."""
    scenario = ref.scenario()
    baseline = baseline_rows(session, scenario) if scenario.expect.sqlite is not None else None
    return run_once(session, scenario, policy, seed, baseline)


def summarise(scenario: Scenario, policy: Policy, figures: list[RunFigures]) -> Cell:
    """The cell of ``scenario`` under ``policy`` from its runs' figures, in seed order."""
    ran = [f for f in figures if not f.hung]
    if not ran:
        raise ScenarioTimeout(f"every run of {scenario.name!r} under {policy.name!r} ran past its wall-clock limit")
    n, r = len(figures), len(ran)
    successes = sum(f.success for f in ran)
    attempts = [f.attempts for f in ran]
    virtual = [f.waited_s for f in ran]
    calls = {k: sum(f.counts.get(k, 0) for f in ran) / r for k in ran[0].counts}
    missing = duplicated = None
    if all(f.judged_rows for f in ran):
        diffs = [f.rows for f in ran]
        if all(d is not None for d in diffs):
            missing = sum(d[0] for d in diffs if d) / r
            duplicated = sum(d[1] for d in diffs if d) / r
    return Cell(
        scenario=scenario.name,
        strategy=policy.name,
        runs=n,
        successes=successes,
        success_rate=successes / n,
        success_ci=wilson(successes, n),
        attempts_mean=sum(attempts) / r,
        attempts_p95=p95(attempts),
        calls=calls,
        calls_mean=sum(calls.values()),
        wasted_calls=sum(f.wasted for f in ran) / r,
        virtual_s_mean=sum(virtual) / r,
        virtual_s_p95=p95(virtual),
        rows_missing=missing,
        rows_duplicated=duplicated,
        wall_s=sum(f.wall_s for f in ran),
    )


def plan(scenarios: list[Scenario], seeds: int) -> list[tuple[Scenario, list[int]]]:
    """Which seeds each scenario runs: all of 0..seeds-1 when it draws at random, else its own."""
    return [(s, list(range(seeds)) if is_random(s) else [s.seed]) for s in scenarios]


def compare(
    runner: Session | Runner,
    scenarios: list[Scenario],
    policies: list[Policy],
    seeds: int,
    tick: Callable[[], None] = lambda: None,
) -> list[Cell]:
    """Every scenario x policy x seed; one ``Cell`` per scenario and policy.

    ``runner`` is a session (the runs one after another here) or a runner
    from ``harness.parallel`` (worker processes, a Dask cluster): the cells
    are the same, in the same order, wall-clock fields aside.
    """
    if isinstance(runner, Session):
        runner = Serial(runner)
    cells = [(s, p, ScenarioRef.of(s), ss) for s, ss in plan(scenarios, seeds) for p in policies]
    jobs = [(ref, p, seed) for _, p, ref, ss in cells for seed in ss]
    figures = iter(runner.map(run_job, jobs, tick))
    out = []
    for scenario, policy, _, scenario_seeds in cells:
        runs = [next(figures) for _ in scenario_seeds]
        for seed, f in zip(scenario_seeds, runs, strict=True):
            if isinstance(f, Failed):
                raise WorkerError(f"{scenario.name!r} under {policy.name!r} with seed {seed} did not run: {f}")
        out.append(summarise(scenario, policy, runs))
    return out
