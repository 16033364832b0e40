"""``harness crashes``: crash a scenario's flow at every point of a run, run it again, and compare the data.

The scenario runs once without a crash: what it ends with (its flow's final
state, the rows its data query reads) is the target, and every point the
run went through is a place to crash: each task run's ``before_task``,
``after_return``, ``after_commit`` and ``after_task`` (the last three for a
task run that completed), and ``after_call`` for each call. For each point
the scenario runs with ``crash:`` there (and ``reruns``); a point passes when
its history ends as the target did: the same final state, no row missing,
none stored twice. Exactly-once effects, checked point by point.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness._errors import HarnessError, shown
from harness.checking.baseline import row_difference
from harness.run.crash import Crashing, Template, run_history
from harness.run.outcome import Outcome, StateInfo
from harness.run.session import Session
from harness.scenario.model import Crash, CrashAt, Scenario
from harness.scenario.strategy import Exponential, Policy
from harness.scenario.writer import dump, plain, step_yaml


@dataclass(frozen=True)
class PointResult:
    """One point of the sweep: how the history crashed there ended."""

    at: CrashAt
    flow: StateInfo | None = None  # the last run's final state
    again: int = 0  # task runs the reruns executed (not served from cache)
    calls: int = 0  # calls over every run
    missing: float = 0.0  # rows of the target's missing after the last run
    duplicated: float = 0.0  # rows stored more often than the target stores them
    error: str = ""  # the history could not run: why

    def passed(self, target: StateInfo) -> bool:
        return not self.error and self.flow == target and not self.missing and not self.duplicated


@dataclass(frozen=True)
class Sweep:
    """Every point of one scenario, crashed ``how``, with ``reruns`` runs after each crash."""

    scenario: Scenario
    how: str
    reruns: int
    target: Outcome
    points: tuple[PointResult, ...]
    policy: Policy | None = None  # the strategy every run was under

    @property
    def failing(self) -> list[PointResult]:
        return [p for p in self.points if not p.passed(self.target.flow)]

    def summary(self) -> str:
        bad = self.failing
        return f"{len(self.points)} point(s), {len(bad)} lose or duplicate data or end otherwise"


def points_of(outcome: Outcome) -> list[CrashAt]:
    """Every crash point a run went through, in the order a task run reaches them, its calls within it."""
    out: list[CrashAt] = []
    runs: dict[str, int] = {}
    calls: dict[str, int] = {}
    placed: set[int] = set()
    for task in outcome.tasks:
        n = runs[task.name] = runs.get(task.name, 0) + 1
        out.append(CrashAt(point="before_task", task=task.name, run=n))
        for i, call in enumerate(outcome.calls):
            if call.endpoint is not None and call.task_run is not None and call.task_run == task.id:
                placed.add(i)
                k = calls[call.endpoint] = calls.get(call.endpoint, 0) + 1
                out.append(CrashAt(point="after_call", request=call.endpoint, n=k))
        if task.state.name == "Completed":  # its function returned, Prefect committed and recorded it
            out += [CrashAt(point=p, task=task.name, run=n) for p in ("after_return", "after_commit", "after_task")]
    for i, call in enumerate(outcome.calls):  # made outside any task run: the flow's own body
        if i not in placed and call.endpoint is not None:
            k = calls[call.endpoint] = calls.get(call.endpoint, 0) + 1
            out.append(CrashAt(point="after_call", request=call.endpoint, n=k))
    return out


def sweep(
    session: Session,
    scenario: Scenario,
    *,
    how: str = "kill",
    reruns: int = 1,
    policy: Policy | None = None,
    progress: Callable[[int], Callable[[], None]] = lambda total: lambda: None,
) -> Sweep:
    """Run ``scenario`` without a crash, then crashed at each point it went through, ``reruns`` times again."""
    if scenario.cancel is not None and scenario.cancel.how == "runner":
        raise HarnessError(
            f"scenario {scenario.name!r} ({shown(scenario.path)}:{scenario.line_of('cancel')}): its flow is served "
            "by Prefect's runner (`cancel: {how: runner}`), in a process the runner starts and the harness does "
            "not kill: sweep it with `how: api_only`, or without `cancel:`"
        )
    Template.of(session)  # its imports, beside the run without a crash
    plain_run = scenario.model_copy(update={"crash": None, "reruns": None, "strategies": {}})
    target = session.run(plain_run, policy=policy)
    at_points = points_of(target)
    results: list[PointResult] = []
    advance = progress(len(at_points))
    histories = [plain_run.model_copy(update={"crash": Crash(at=at, how=how), "reruns": reruns}) for at in at_points]
    # Each point's crashing run starts while this process runs the reruns of the point before it; not with
    # concurrency limits, which are each history's own (declared for it, deleted after it).
    ahead: Crashing | None = None
    overlap = scenario.concurrency_limits is None
    try:
        for i, (at, crashed) in enumerate(zip(at_points, histories, strict=True)):
            try:
                if overlap:
                    crashing, ahead = ahead or Crashing(session, crashed, policy=policy), None
                    if i + 1 < len(histories):
                        ahead = Crashing(session, histories[i + 1], policy=policy)
                    outcome = run_history(session, crashed, policy=policy, crashing=crashing)
                else:
                    outcome = session.run(crashed, policy=policy)
            except HarnessError as exc:
                results.append(PointResult(at, error=str(exc).splitlines()[0]))
            else:
                results.append(_judged(crashed, outcome, target))
            advance()
    finally:
        if ahead is not None:
            ahead.abandon()
    return Sweep(scenario, how, reruns, target, tuple(results), policy)


def _judged(crashed: Scenario, outcome: Outcome, target: Outcome) -> PointResult:
    assert crashed.crash is not None
    diff = row_difference(outcome.sqlite, target.sqlite) if target.sqlite is not None else None
    missing, duplicated = diff if diff is not None else (0.0, 0.0)
    again = sum(1 for run in outcome.runs[1:] for t in run.tasks if t.state.name != "Cached")
    return PointResult(crashed.crash.at, outcome.flow, again, len(outcome.calls), missing, duplicated)


def table(result: Sweep) -> list[str]:
    """One line per point: where it crashed, the last run's state, task runs run again, calls, rows."""
    heads = ("point", "verdict", "last run", "ran again", "calls", "rows missing", "rows twice")
    rows = [
        (
            str(p.at),
            "pass" if p.passed(result.target.flow) else "FAIL",
            p.error or (p.flow.name if p.flow else ""),
            str(p.again),
            str(p.calls),
            f"{p.missing:g}",
            f"{p.duplicated:g}",
        )
        for p in result.points
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    return ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [heads, *rows]]


def as_json(result: Sweep) -> dict[str, Any]:
    target = result.target
    return {
        "scenario": result.scenario.name,
        "file": shown(result.scenario.path),
        "how": result.how,
        "reruns": result.reruns,
        "target": {"flow": target.flow.name, "rows": plain(target.sqlite), "calls": len(target.calls)},
        "points": [
            {
                "at": p.at.as_yaml(),
                "passed": p.passed(target.flow),
                "flow": p.flow.name if p.flow else None,
                "ran_again": p.again,
                "calls": p.calls,
                "rows_missing": p.missing,
                "rows_duplicated": p.duplicated,
                "error": p.error or None,
            }
            for p in result.points
        ],
        "summary": result.summary(),
    }


def as_markdown(result: Sweep) -> str:
    lines = table(result)
    head, *rows = (line.split("  ") for line in lines)
    cells = [[c.strip() for c in row if c.strip()] for row in [head, *rows]]
    out = [f"### Crash sweep: {result.scenario.name} ({result.how}, {result.reruns} rerun(s))", ""]
    out.append("| " + " | ".join(cells[0]) + " |")
    out.append("|" + "---|" * len(cells[0]))
    out += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join([*out, "", result.summary(), ""])


def write(result: Sweep, path: str | Path) -> Path:
    """The failing points as scenarios that reproduce them: crashed there, expecting what the run without a
    crash ends with (its flow's state, no row lost or stored twice), so each fails until the flow is fixed."""
    source = result.scenario
    documents = []
    for p in result.failing:
        doc: dict[str, Any] = {
            "name": f"{source.name}: crashed ({result.how}) at {p.at}",
            "description": (
                f"Found by `harness crashes` from {shown(source.path)}:{source.line}: killed there and run again, "
                "the flow does not end as a run without a crash does. It fails until the flow is fixed."
            ),
            "flow": source.flow,
        }
        if source.parameters:
            doc["parameters"] = plain(source.parameters)
        doc["seed"] = source.seed
        doc["endpoints"] = [_endpoint_yaml(e) for e in source.endpoints]
        if source.transport is not None:
            doc["transport"] = source.transport
        doc["crash"] = {"at": p.at.as_yaml(), "how": result.how}
        doc["reruns"] = result.reruns
        if source.rerun_after:
            doc["rerun_after"] = source.rerun_after
        expect: dict[str, Any] = {"flow": result.target.flow.name}
        if result.target.sqlite is not None:
            expect["invariants"] = ["no_data_loss", "no_duplicates"]
        doc["expect"] = expect
        if result.policy is not None:  # the sweep's strategy, with the same expectations
            doc["strategies"] = {result.policy.name: {**_policy_yaml(result.policy), "expect": expect}}
        documents.append(dump(doc))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# harness crashes {shown(source.path)}: {result.summary()}\n" + "---\n".join(documents))
    return out


def _policy_yaml(policy: Policy) -> dict[str, Any]:
    """A strategy's options as a scenario writes them under ``strategies:``."""
    out: dict[str, Any] = policy.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
    if isinstance(policy.retry_delay_seconds, Exponential):
        out["retry_delay_seconds"] = {"exponential": out["retry_delay_seconds"]}
    return out


def _endpoint_yaml(endpoint: Any) -> dict[str, Any]:
    steps = [
        {**step_yaml(s), **({"times": s.times} if s.times != 1 else {}), **({"until": s.until} if s.until else {})}
        for s in endpoint.responses
    ]
    out: dict[str, Any] = {"request": endpoint.request.text, "responses": steps}
    if endpoint.chaos is not None:
        chaos = endpoint.chaos
        out["chaos"] = {
            "rate": chaos.rate,
            "faults": [step_yaml(s) for s in chaos.faults],
            "otherwise": step_yaml(chaos.otherwise),
        }
    return out


def to_json(result: Sweep) -> str:
    return json.dumps(as_json(result), indent=2)
