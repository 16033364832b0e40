"""Fault search: the smallest fault schedule that breaks an invariant of a flow.

A scenario supplies the flow, its parameters, its endpoints and its function
targets; each endpoint's healthy answer is the one ``harness.checking.baseline.fault_free``
serves (chaos' ``otherwise``, else its last 2xx answer, else its last step),
and each function target's is to call through. ``explore`` draws *schedules*
with Hypothesis: per endpoint, a list of faults (``harness.generators.faulty_steps``:
transport faults, error statuses, malformed bodies, with latency) served before
the healthy answer; per function target, a list of the ready kinds it can
raise (``harness.generators.function_faults``) before it calls through. It
runs each schedule on the real engine, stops at the first that breaks the
invariant and shrinks it with Hypothesis' own shrinker (``hypothesis.find``)
to a minimal schedule. ``write`` turns that into a
scenario file whose ``expect`` states the invariant and whose ``xfail`` names
the violation: committed, it keeps CI green while the flow is broken and
XPASSes (strict) the day it is fixed.

Reproducible: no example database and a fixed seed, so the same seed finds the
same schedule. ``budget`` (Hypothesis' ``max_examples``) bounds the schedules
tried before the first violation; shrinking then runs at most ``shrink_runs``
more flow runs or ``shrink_seconds``, whichever comes first. A schedule is run
once: Hypothesis often proposes one again, and its verdict is remembered.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, find, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning, NoSuchExample
from pydantic import ValidationError

from harness import generators
from harness._errors import HarnessError, UsageError, shown
from harness.checking.baseline import DATA_INVARIANTS, baseline_rows, fault_free
from harness.checking.expectations import plain, violation
from harness.run.data import data_query
from harness.run.outcome import Outcome
from harness.run.session import Session
from harness.scenario.model import Expect, Invariant, Scenario, Step
from harness.scenario.resolve import resolve_flow
from harness.scenario.writer import dump as dump
from harness.scenario.writer import invariant_yaml as invariant_yaml
from harness.scenario.writer import step_yaml as step_yaml

RANDOM_WARNING = "Do not use the `random` module inside strategies"

# Per endpoint, then per function target, in declared order: the faulty steps served before its healthy answer.
Schedule = tuple[tuple[dict[str, Any], ...], ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """A minimal schedule that breaks the invariant, as a scenario, with what it broke."""

    schedule: Schedule
    scenario: Scenario
    document: dict[str, Any]  # the scenario as YAML writes it
    violation: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Exploration:
    """What a search did: the finding (None when the budget found nothing), counts and times."""

    source: Scenario
    invariant: Invariant
    seed: int
    budget: int
    finding: Finding | None
    tried: int  # schedules drawn before the first violation (all of them when none was found)
    runs: int  # flow runs those took: a schedule drawn again is not run again
    search_s: float
    shrink_runs: int
    shrink_s: float
    shrink_capped: bool  # shrinking stopped at its cap: the schedule is small, perhaps not minimal

    @property
    def rate(self) -> float:
        """Schedules tried per second, before shrinking."""
        return self.tried / self.search_s if self.search_s else 0.0


def parse_invariant(text: str) -> Invariant:
    """``completes``, ``no_data_loss``, ``no_duplicates``, ``bounded_calls:N`` or ``module:function``."""
    name, _, bound = text.partition(":")
    if name == "bounded_calls":
        if not bound.isdigit():
            raise UsageError(f"bounded_calls needs a whole number of calls, e.g. bounded_calls:4; got {text!r}")
        value: Any = {"bounded_calls": int(bound)}
    else:
        value = text
    try:
        return Expect.model_validate({"invariants": [value]}).invariants[0]
    except ValidationError as exc:
        raise UsageError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


class _Aborted(BaseException):
    """Stops Hypothesis at once (it shrinks towards an ``Exception``, never a ``BaseException``)."""

    def __init__(self, error: HarnessError) -> None:
        self.error = error


class _Search:
    """Runs schedules for Hypothesis, once each, and counts what the search and the shrinking spent."""

    def __init__(
        self,
        session: Session,
        source: Scenario,
        invariant: Invariant,
        shrink_runs: int,
        shrink_seconds: float,
    ) -> None:
        self.session, self.source, self.invariant = session, source, invariant
        self.healthy = [e.responses[0] for e in fault_free(source).endpoints]
        self.shrink_runs, self.shrink_seconds = shrink_runs, shrink_seconds
        self.verdicts: dict[str, tuple[str | None, Outcome]] = {}
        self.started = time.perf_counter()
        self.found_at: float | None = None
        self.tried = self.runs = self.shrunk = 0
        self.capped = False
        self.baseline: Any = None
        if invariant.kind in DATA_INVARIANTS:
            self.baseline = baseline_rows(session, source)

    def judge(self, schedule: Schedule) -> tuple[str | None, Outcome] | None:
        """The violation (None when the invariant holds) and the outcome; None when out of shrinking budget."""
        key = json.dumps(schedule, sort_keys=True)
        if key not in self.verdicts:
            if self.found_at is not None:
                if self.shrunk >= self.shrink_runs or time.perf_counter() - self.found_at >= self.shrink_seconds:
                    self.capped = True
                    return None  # never run, so never taken as smaller
                self.shrunk += 1
            else:
                self.runs += 1
            try:
                outcome = self.session.run(
                    _validated(_document(self.source, self.invariant, self.healthy, schedule), self.source)
                )
            except HarnessError as exc:  # a hung run, say: stop the search, never shrink towards it
                exc.add_note(f"while running the schedule {schedule!r}")
                raise _Aborted(exc) from exc
            problem = violation(self.invariant, outcome, self.baseline, near=self.source.path.parent)
            self.verdicts[key] = (problem, outcome)
        return self.verdicts[key]

    def breaks(self, drawn: Any) -> bool:
        """Hypothesis' condition: does this schedule break the invariant?"""
        if self.found_at is None:
            self.tried += 1
        verdict = self.judge(tuple(tuple(faults) for faults in drawn))
        if verdict is None or verdict[0] is None:
            return False
        if self.found_at is None:
            self.found_at = time.perf_counter()
        return True


BUDGET, SHRINK_RUNS, SHRINK_S = 100, 100, 60.0  # schedules tried; runs and wall seconds shrinking may add


def explore(
    session: Session,
    scenario: Scenario,
    invariant: Invariant,
    *,
    budget: int = BUDGET,
    seed: int = 0,
    max_faults: int = generators.MAX_FAULTS,
    shrink_runs: int = SHRINK_RUNS,
    shrink_seconds: float = SHRINK_S,
) -> Exploration:
    """Search fault schedules of ``scenario`` for the smallest that breaks ``invariant``.

    Raises ``UsageError`` when the scenario cannot be searched: no endpoints,
    no rows to judge a data invariant by, a request it does not declare, or
    the invariant broken already without any fault; and the ``HarnessError``
    of a run that could not finish (``ScenarioTimeout``), naming its schedule.
    """
    search = _searchable(session, scenario, invariant, shrink_runs, shrink_seconds)
    strategy = st.tuples(
        *(generators.schedules(max_faults=max_faults) for _ in search.healthy),
        *(generators.schedules(generators.function_faults(f.call), max_faults=max_faults) for f in scenario.functions),
    )
    options = _settings(budget)
    try:
        with warnings.catch_warnings():
            # Prefect's background threads draw from the global `random` while Hypothesis draws a
            # schedule; Hypothesis takes that for a strategy using `random`. The schedules do not.
            warnings.filterwarnings("ignore", RANDOM_WARNING, HypothesisDeprecationWarning)
            drawn = find(strategy, search.breaks, settings=options, random=Random(seed))
    except NoSuchExample:
        drawn = None
    except _Aborted as stop:
        raise stop.error from None
    done = time.perf_counter()
    finding = None
    if drawn is not None:
        schedule: Schedule = tuple(tuple(faults) for faults in drawn)
        problem, outcome = search.verdicts[json.dumps(schedule, sort_keys=True)]
        assert problem is not None
        document = _document(
            scenario, invariant, search.healthy, schedule, xfail=f"{invariant}: {problem}", rows=search.baseline
        )
        finding = Finding(schedule, _validated(document, scenario), document, problem, outcome)
    found_at = search.found_at or done
    return Exploration(
        source=scenario,
        invariant=invariant,
        seed=seed,
        budget=budget,
        finding=finding,
        tried=search.tried,
        runs=search.runs,
        search_s=found_at - search.started,
        shrink_runs=search.shrunk,
        shrink_s=done - found_at,
        shrink_capped=search.capped,
    )


def _searchable(
    session: Session, scenario: Scenario, invariant: Invariant, shrink_runs: int, shrink_seconds: float
) -> _Search:
    """A search of ``scenario``, once its fault-free run shows it can be searched; else ``UsageError``."""
    if not scenario.endpoints and not scenario.functions:
        raise UsageError(
            f"scenario {scenario.name!r} declares no endpoints and no functions: there is nowhere to inject faults"
        )
    flow = resolve_flow(scenario.flow, base=scenario.path.parent)
    if invariant.kind in DATA_INVARIANTS and data_query(scenario, flow) is None:
        raise UsageError(
            f"{invariant} compares the rows stored with a fault-free run's: give scenario {scenario.name!r} "
            "`expect.sqlite` (path and query of the rows the flow stores)"
        )
    search = _Search(session, scenario, invariant, shrink_runs, shrink_seconds)
    fault_free_run = search.judge(tuple(() for _ in [*search.healthy, *scenario.functions]))
    assert fault_free_run is not None
    problem, outcome = fault_free_run
    search.started = time.perf_counter()  # the search's speed, without the server's start-up
    undeclared = sorted({f"{c.method} {c.url}" for c in outcome.unmatched}) + list(outcome.blocked)
    if undeclared:
        raise UsageError(
            f"scenario {scenario.name!r} sends requests it does not declare ({', '.join(undeclared)}): "
            "declare every endpoint the flow calls before searching"
        )
    if problem is not None:
        raise UsageError(
            f"scenario {scenario.name!r} breaks {invariant} without any fault ({problem}): "
            "its healthy answers (each endpoint's last 2xx answer, or chaos' otherwise) must keep the invariant"
        )
    return search


def _settings(budget: int) -> settings:
    """Hypothesis' settings for a reproducible search: no database, no deadline, quiet."""
    return settings(
        max_examples=budget,
        database=None,
        derandomize=False,
        deadline=None,
        phases=(Phase.generate, Phase.shrink),
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )


def _validated(document: dict[str, Any], source: Scenario) -> Scenario:
    scenario = Scenario.model_validate(document)
    scenario._path = source.path  # a flow module beside the source file imports as it does there
    scenario._line = source.line
    return scenario


def _document(
    source: Scenario,
    invariant: Invariant,
    healthy: Sequence[Step],
    schedule: Schedule,
    xfail: str | None = None,
    rows: Any = None,
) -> dict[str, Any]:
    """The scenario of one schedule, as YAML writes it."""
    doc: dict[str, Any] = {
        "name": f"{source.name}: minimal schedule breaking {invariant}",
        "description": (
            f"Found by `harness explore` from {shown(source.path)}:{source.line}: the smallest fault schedule, "
            f"served before each endpoint's healthy answer, that breaks `{invariant}`. Committed with `xfail` it "
            "passes while the flow fails this way; when the flow is fixed it XPASSes (strict): remove `xfail` "
            "and keep it as a regression test."
        ),
        "flow": source.flow,
    }
    if source.parameters:
        doc["parameters"] = plain(source.parameters)  # the loader's line-keeping containers, as plain YAML
    doc["seed"] = source.seed
    if xfail is not None:
        doc["xfail"] = xfail
    ends, calls = schedule[: len(source.endpoints)], schedule[len(source.endpoints) :]
    doc["endpoints"] = [
        {"request": e.request.text, "responses": [*_runs(faults), step_yaml(answer)]}
        for e, faults, answer in zip(source.endpoints, ends, healthy, strict=True)
    ]
    if source.functions:
        doc["functions"] = [
            {
                "call": f.call,
                **({"where": dict(f.where)} if f.where else {}),
                "responses": [*_runs(faults), {"pass": True}],
            }
            for f, faults in zip(source.functions, calls, strict=True)
        ]
    expect: dict[str, Any] = {"invariants": [invariant_yaml(invariant)]}
    if invariant.kind in DATA_INVARIANTS and source.expect.sqlite is not None:
        spec = source.expect.sqlite  # where the rows are; `equals`, the fault-free rows, says what is lost
        expect["sqlite"] = {"path": spec.path, "query": spec.query, "equals": plain(rows)}
    doc["expect"] = expect
    return doc


def _runs(faults: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive equal steps as one step with ``times``."""
    out: list[dict[str, Any]] = []
    for step in faults:
        last = out[-1] if out else None
        if last is not None and {k: v for k, v in last.items() if k != "times"} == step:
            last["times"] = last.get("times", 1) + 1
        else:
            out.append(dict(step))
    return out


def write(exploration: Exploration, out: str | Path, command: str = "") -> Path:
    """Write the finding as ``OUT/<scenario>--<invariant>.yaml`` and return its path."""
    finding = exploration.finding
    if finding is None:
        raise UsageError("nothing to write: the search found no schedule that breaks the invariant")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(exploration.source.name)}--{_slug(str(exploration.invariant))}.yaml"
    header = [
        f"# {command or 'harness explore'}",
        f"# seed {exploration.seed}: {exploration.tried} schedule(s) tried before this one broke "
        f"{exploration.invariant}, then shrunk in {exploration.shrink_runs} run(s).",
    ]
    path.write_text("\n".join(header) + "\n" + dump(finding.document))
    return path


def import_note(source: Scenario, out: str | Path) -> str | None:
    """A warning when the flow's module sits beside the source file, where a scenario in ``out`` cannot import it."""
    module, colon, _ = source.flow.partition(":")
    top = module.split(".")[0]
    folder = source.path.parent
    if not colon or not ((folder / top).is_dir() or (folder / f"{top}.py").is_file()):
        return None
    if Path(out).resolve() == folder.resolve():
        return None
    return (
        f"note: flow {source.flow!r} imports from beside {shown(source.path)}; a scenario in {out} cannot import it: "
        f"move the file next to {shown(source.path)}, or make {top!r} importable (installed, or on PYTHONPATH)"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "scenario"


def describe(exploration: Exploration) -> list[str]:
    """The search's counts and speed, then the minimal schedule endpoint by endpoint."""
    e = exploration
    lines = [
        f"searched {e.tried} schedule(s) in {e.search_s:.1f} s ({e.rate:.1f} schedules/s, {e.runs} flow runs; "
        f"budget {e.budget}, seed {e.seed})"
    ]
    if e.finding is None:
        lines.append(f"no schedule broke {e.invariant}")
        return lines
    capped = " (stopped at its cap: small, perhaps not minimal)" if e.shrink_capped else ""
    lines.append(f"shrunk in {e.shrink_runs} run(s), {e.shrink_s:.1f} s{capped}")
    lines.append(f"{e.invariant} broken: {e.finding.violation}")
    lines.append("minimal schedule, before each endpoint's healthy answer:")
    targets = [e.request.text for e in e.source.endpoints] + [f.call for f in e.source.functions]
    for target, faults in zip(targets, e.finding.schedule, strict=True):
        steps = _runs(faults)
        shown_steps = ", ".join(dump(s).strip() for s in steps) if steps else "nothing (healthy from the first call)"
        lines.append(f"  {target}: {shown_steps}")
    return lines
