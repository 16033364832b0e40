"""Checking an Outcome against a scenario's ``expect``, in the scenario's own terms."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness._errors import ScenarioFailure, shown
from harness.checking.baseline import DATA_INVARIANTS, row_difference
from harness.run.outcome import Outcome, StateInfo, TaskRun
from harness.scenario.model import UNSET, Invariant, RequestLine, RunExpect, Scenario, StateMatch, TaskExpect
from harness.scenario.resolve import resolve_function
from harness.scenario.strategy import Policy
from harness.scenario.writer import plain as plain  # where scenarios are written

NOT_GIVEN: Any = object()  # ``check`` was given no fault-free baseline (``None`` is a baseline with no rows)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One expectation that the outcome did not meet."""

    field: str
    expected: Any
    observed: Any
    line: int

    def __str__(self) -> str:
        return f"{self.field}: expected {_show(self.expected)}, observed {_show(self.observed)}"


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _state_text(state: StateInfo) -> str:
    return state.name if state.name.upper() == state.type else f"{state.name} ({state.type})"


def _state_mismatches(field: str, want: StateMatch, got: StateInfo, line: int) -> list[Mismatch]:
    out = []
    if want.state is not None and want.state != got.name:
        out.append(Mismatch(f"{field}.state" if want.type or want.message else field, want.state, got.name, line))
    if want.type is not None and want.type != got.type:
        out.append(Mismatch(f"{field}.type", want.type, got.type, line))
    if want.message is not None and not re.search(want.message, got.message or ""):
        out.append(Mismatch(f"{field}.message", f"a match for /{want.message}/", repr(got.message), line))
    return out


def check(scenario: Scenario, outcome: Outcome, *, baseline: Any = NOT_GIVEN) -> list[Mismatch]:
    """Every way ``outcome`` differs from what ``scenario`` expects.

    ``baseline`` is the data a fault-free run stores (``checking.baseline.baseline_rows``),
    which the data invariants compare with; ``harness.run_scenario`` passes it.
    """
    exp = scenario.expect
    out = _network_mismatches(scenario, outcome)
    out += _run_mismatches(scenario, exp, outcome, ("expect",))
    for i, run in enumerate(exp.flow_runs):
        if i < len(outcome.runs):  # the loader checks there are as many entries as runs
            out += _run_mismatches(scenario, run, outcome.runs[i], ("expect", "flow_runs", i))
    for key, n in exp.calls.items():
        got_n = outcome.counts.get(key, 0)
        if got_n != n:
            out.append(Mismatch(f"expect.calls[{key}]", n, got_n, scenario.line_of("expect", "calls", key)))
    out += _data_and_time_mismatches(scenario, outcome)
    out += _hook_mismatches(scenario, outcome)
    out += _api_mismatches(scenario, outcome)
    out += _slots_mismatches(scenario, outcome)
    for i, inv in enumerate(exp.invariants):
        problem = violation(inv, outcome, baseline, near=scenario.path.parent)
        if problem:
            out.append(
                Mismatch(f"expect.invariants[{i}]", str(inv), problem, scenario.line_of("expect", "invariants", i))
            )
    return out


def _run_mismatches(
    scenario: Scenario, exp: RunExpect, outcome: Outcome, where: tuple[str | int, ...]
) -> list[Mismatch]:
    """One flow run's final state, result and task runs (``where``: the expectation's place in the scenario)."""
    at = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where).lstrip(".")
    out = []
    if exp.flow is not None:
        out += _state_mismatches(f"{at}.flow", exp.flow, outcome.flow, scenario.line_of(*where, "flow"))
    if exp.result is not UNSET and plain(outcome.result) != exp.result:
        out.append(Mismatch(f"{at}.result", exp.result, plain(outcome.result), scenario.line_of(*where, "result")))
    for name, runs in exp.tasks.items():
        out += _task_mismatches(scenario, name, runs, outcome, where)
    return out


def _api_mismatches(scenario: Scenario, outcome: Outcome) -> list[Mismatch]:
    """``expect.raises``, ``expect.prefect_api`` (requests per route) and ``expect.server`` (the server's view)."""
    exp, out = scenario.expect, []
    if scenario.cancel is not None and not outcome.cancelled:
        line = scenario.line_of("cancel", "at")
        out.append(Mismatch("cancel.at", f"the run reaching {scenario.cancel.at}", "it never did", line))
    if exp.raises is not None and not re.search(exp.raises, outcome.raised or ""):
        observed = f"it raised {outcome.raised}" if outcome.raised else f"it returned a state ({outcome.flow.name})"
        out.append(
            Mismatch(
                "expect.raises", f"the flow call raising /{exp.raises}/", observed, scenario.line_of("expect", "raises")
            )
        )
    elif exp.raises is None and outcome.raised is not None:
        out.append(
            Mismatch(
                "expect.flow",
                "a final state",
                f"no state: the flow call raised {outcome.raised}",
                scenario.line_of("expect"),
            )
        )
    if exp.prefect_api is not None:
        for route, n in exp.prefect_api.calls.items():
            got = outcome.api_counts.get(route, 0)
            if got != n:
                out.append(
                    Mismatch(
                        f"expect.prefect_api.calls[{route}]",
                        n,
                        got,
                        scenario.line_of("expect", "prefect_api", "calls", route),
                    )
                )
    if exp.server is not None:
        view = outcome.server
        if exp.server.flow is not None:
            held_flow = view.flow if view is not None else None
            line = scenario.line_of("expect", "server", "flow")
            if held_flow is None:
                out.append(
                    Mismatch(
                        "expect.server.flow",
                        exp.server.flow.state or exp.server.flow.type,
                        "the server holds no flow run of it",
                        line,
                    )
                )
            else:
                out += _state_mismatches(
                    "expect.server.flow",
                    exp.server.flow,
                    held_flow,
                    line,
                )
        for name, want in exp.server.tasks.items():
            line = scenario.line_of("expect", "server", "tasks", name)
            held = view.tasks.get(name) if view is not None else None
            field = f"expect.server.tasks.{name}"
            if want is None:
                if held is not None:
                    out.append(Mismatch(field, "no run of it on the server", f"a run, {held.name}", line))
            elif held is None:
                out.append(Mismatch(field, want.state or want.type, "the server holds no run of it", line))
            else:
                out += _state_mismatches(field, want, held, line)
    return out


def _slots_mismatches(scenario: Scenario, outcome: Outcome) -> list[Mismatch]:
    """``expect.slots``: per concurrency limit, the slots held after the run and the longest wait for one."""
    out = []
    for name, want in scenario.expect.slots.items():
        got = outcome.slots.get(name)
        field = f"expect.slots.{name}"
        if want.held_after is not None:
            held = got.held_after if got is not None else None
            if held != want.held_after:
                observed = "the limit could not be read back" if held is None else held
                line = scenario.line_of("expect", "slots", name, "held_after")
                out.append(Mismatch(f"{field}.held_after", want.held_after, observed, line))
        if want.waited is None:
            continue
        waits = ", ".join(f"{task} {s:g} s" for task, s in got.waited) if got is not None and got.waited else "none"
        longest = got.longest if got is not None else 0.0
        if want.waited.max is not None and longest > want.waited.max:
            line = scenario.line_of("expect", "slots", name, "waited", "max")
            out.append(Mismatch(f"{field}.waited.max", f"at most {want.waited.max:g} s", f"waits: {waits}", line))
        if want.waited.min is not None and longest < want.waited.min:
            line = scenario.line_of("expect", "slots", name, "waited", "min")
            out.append(Mismatch(f"{field}.waited.min", f"at least {want.waited.min:g} s", f"waits: {waits}", line))
    return out


def _hook_mismatches(scenario: Scenario, outcome: Outcome) -> list[Mismatch]:
    """``expect.hooks``: how many times each kind of state hook ran, for the flow and for each task by name."""
    want = scenario.expect.hooks
    if want is None:
        return []
    asked: list[tuple[tuple[str, ...], str, str | None, BaseModel]] = []
    if want.flow is not None:
        asked.append((("flow",), "expect.hooks.flow", None, want.flow))
    asked += [(("tasks", name), f"expect.hooks.tasks[{name}]", name, c) for name, c in want.tasks.items()]
    out = []
    for where, field, name, counts in asked:
        for kind, n in counts.model_dump(exclude_none=True).items():
            got = outcome.hooks_ran("flow" if name is None else "task", kind, name)
            if got != n:
                out.append(Mismatch(f"{field}.{kind}", n, got, scenario.line_of("expect", "hooks", *where, kind)))
    return out


def _network_mismatches(scenario: Scenario, outcome: Outcome) -> list[Mismatch]:
    """Requests no endpoint declares and connections the guard refused: each fails the scenario."""
    unmatched = Counter((call.method, call.url) for call in outcome.unmatched)
    declared = ", ".join(e.request.text for e in scenario.endpoints) or "none"
    out = [
        Mismatch(
            "endpoints",
            f"a declared endpoint for every request (declared: {declared})",
            f"{method} {url} matched none ({n} call{'s' if n > 1 else ''})"
            + near_miss(method, url, [e.request for e in scenario.endpoints]),
            scenario.line_of("endpoints"),
        )
        for (method, url), n in unmatched.items()
    ]
    out += [
        Mismatch("network", "no connection outside the declared endpoints", f"{what} (refused)", scenario.line)
        for what in outcome.blocked
    ]
    return out


def closest_endpoints(method: str, url: str, requests: Sequence[RequestLine]) -> list[tuple[RequestLine, list[str]]]:
    """The declared request lines nearest a request that matched none, with what differs in each.

    Ranked by the number of differences, then by how alike the two texts are: the nearest, or the two
    nearest when they tie on both.
    """
    request = f"{method} {url}"
    ranked = sorted(
        (
            (len(diffs), -round(difflib.SequenceMatcher(None, request, line.text).ratio(), 9), i, line, diffs)
            for i, line in enumerate(requests)
            if (diffs := line.differences(method, url))
        ),
        key=lambda r: r[:3],
    )
    if not ranked:
        return []
    tied = [r for r in ranked[1:2] if r[:2] == ranked[0][:2]]
    return [(line, diffs) for _, _, _, line, diffs in [ranked[0], *tied]]


def near_miss(method: str, url: str, requests: Sequence[RequestLine]) -> str:
    """``; closest: GET https://host/path (path /paths, not /path)``, or nothing when no endpoint is declared."""
    closest = closest_endpoints(method, url, requests)
    if not closest:
        return ""
    return "; closest: " + " or ".join(f"{line.text} ({', '.join(diffs)})" for line, diffs in closest)


def _task_mismatches(
    scenario: Scenario,
    name: str,
    runs: tuple[TaskExpect, ...],
    outcome: Outcome,
    where: tuple[str | int, ...] = ("expect",),
) -> list[Mismatch]:
    """One task's expected runs against its observed runs, in the order the flow called or submitted them."""
    line = scenario.line_of(*where, "tasks", name)
    at = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where).lstrip(".") + f".tasks.{name}"
    observed = outcome.task_runs(name)
    if len(runs) == 1 and runs[0].runs is not None:
        return _counted_runs(at, runs[0], observed, line)
    if not observed:
        ran = sorted({t.name for t in outcome.tasks})
        return [Mismatch(at, "a run", f"it never ran (ran: {', '.join(ran) or 'no task'})", line)]
    out = []
    if len(observed) != len(runs):
        out.append(Mismatch(at, f"{len(runs)} run(s)", f"{len(observed)} run(s)", line))
    for i, (want, got) in enumerate(zip(runs, observed, strict=False)):
        field = at + (f"[{i}]" if len(runs) > 1 else "")
        item_line = scenario.line_of(*where, "tasks", name, i) if len(runs) > 1 else line
        if want.state or want.type or want.message:
            out += _state_mismatches(field, want, got.state, item_line)
        if want.retries is not None and want.retries != got.retries:
            out.append(Mismatch(f"{field}.retries", want.retries, got.retries, item_line))
    return out


def _counted_runs(field: str, want: TaskExpect, observed: list[TaskRun], line: int) -> list[Mismatch]:
    """``{runs: N, ...}``: exactly N runs started, each with the state and retries given."""
    if len(observed) != want.runs:
        seen = ", ".join(f"{_state_text(t.state)} after {t.retries} retries" for t in observed)
        return [Mismatch(f"{field}.runs", want.runs, f"{len(observed)}" + (f" ({seen})" if seen else ""), line)]
    out = []
    for i, got in enumerate(observed):
        at = f"{field}[{i}]" if len(observed) > 1 else field
        if want.state or want.type or want.message:
            out += _state_mismatches(at, want, got.state, line)
        if want.retries is not None and want.retries != got.retries:
            out.append(Mismatch(f"{at}.retries", want.retries, got.retries, line))
    return out


def _data_and_time_mismatches(scenario: Scenario, outcome: Outcome) -> list[Mismatch]:
    """``expect.sqlite`` against the rows read after the run; ``expect.virtual_time`` against the time waited."""
    exp, out = scenario.expect, []
    if exp.sqlite is not None:
        line = scenario.line_of("expect", "sqlite")
        if outcome.sqlite_error:
            out.append(Mismatch("expect.sqlite", plain(exp.sqlite.equals), outcome.sqlite_error, line))
        elif plain(outcome.sqlite) != exp.sqlite.equals:
            out.append(Mismatch("expect.sqlite.equals", exp.sqlite.equals, plain(outcome.sqlite), line))
    if exp.virtual_time is not None:
        line = scenario.line_of("expect", "virtual_time")
        vt, waited = exp.virtual_time, round(outcome.waited_s, 3)
        if vt.max is not None and waited > vt.max:
            out.append(Mismatch("expect.virtual_time.max", f"<= {vt.max:g} s", f"{waited:g} s", line))
        if vt.min is not None and waited < vt.min:
            out.append(Mismatch("expect.virtual_time.min", f">= {vt.min:g} s", f"{waited:g} s", line))
    return out


def violation(
    invariant: Invariant, outcome: Outcome, baseline: Any = NOT_GIVEN, near: Path | None = None
) -> str | None:
    """How ``outcome`` breaks ``invariant``, or None when it holds (``baseline``: see ``check``)."""
    if invariant.kind == "completes":
        return None if outcome.flow.type == "COMPLETED" else f"the flow ended {_state_text(outcome.flow)}"
    if invariant.kind == "bounded_calls":
        over = {k: n for k, n in outcome.counts.items() if invariant.bound is not None and n > invariant.bound}
        return None if not over else "; ".join(f"{k} took {n} calls" for k, n in over.items())
    if invariant.kind in DATA_INVARIANTS:
        return _data_violation(invariant.kind, outcome, baseline)
    if invariant.kind == "no_orphan_flow_runs":
        orphans = [o for run in (outcome.runs or (outcome,)) if run.server is not None for o in run.server.orphans]
        return None if not orphans else f"the server holds flow runs never run to an end: {'; '.join(orphans)}"
    result = resolve_function(invariant.kind, "invariant", near)(outcome)
    return None if result in (None, True) else ("violated" if result is False else str(result))


def _data_violation(kind: str, outcome: Outcome, served: Any) -> str | None:
    """The rows the run stored (``sqlite``) against those a fault-free run of the scenario stores (``served``).

    Both are the data query's result: a count (one number) or rows. ``no_data_loss``
    fails when rows of the fault-free run are missing, ``no_duplicates`` when rows
    are stored more often than the fault-free run stores them.
    """
    if served is NOT_GIVEN:
        return (
            f"cannot judge {kind} without the rows a fault-free run stores: use harness.run_scenario, or pass "
            "check(..., baseline=harness.checking.baseline.baseline_rows(session, scenario))"
        )
    stored = outcome.sqlite
    if isinstance(served, list) and stored is not None and not isinstance(stored, list):
        stored = [[stored]]  # one row of one column comes back as a single value
    diff = None if served is None else row_difference(stored, served)
    if diff is None:
        return (
            f"cannot judge {kind}: a fault-free run of the scenario gave no rows to compare with; "
            "name where the flow stores them with `expect.sqlite` (path, query)"
        )
    missing, extra = diff
    total = len(served) if isinstance(served, list) else served
    if kind == "no_data_loss":
        return None if not missing else f"{missing:g} of the {total:g} row(s) a fault-free run stores are missing"
    return None if not extra else f"{extra:g} row(s) stored beyond the {total:g} a fault-free run stores"


def failure(
    scenario: Scenario, outcome: Outcome, mismatches: list[Mismatch], policy: Policy | None = None
) -> ScenarioFailure:
    """A ``ScenarioFailure`` whose message lists every mismatch and what was observed."""
    return ScenarioFailure(describe_failure(scenario, outcome, mismatches, policy))


def describe_failure(
    scenario: Scenario, outcome: Outcome, mismatches: list[Mismatch], policy: Policy | None = None
) -> str:
    where = shown(scenario.path)
    under = f" under strategy {policy.name!r} ({policy.task_options()})" if policy is not None else ""
    lines = [f"scenario {scenario.name!r}{under} ({where}:{scenario.line}) did not do what it expects:"]
    lines += [f"  {where}:{m.line}: {m}" for m in mismatches]
    lines.append("observed:")
    lines += ["  " + x for x in describe_outcome(outcome)]
    return "\n".join(lines)


def describe_outcome(outcome: Outcome) -> list[str]:
    """The outcome as a reader checks it: flow, task runs, calls per endpoint."""
    msg = f"  ({outcome.flow.message})" if outcome.flow.message else ""
    lines = [f"flow   {_state_text(outcome.flow)}{msg}"]
    for t in outcome.tasks:
        lines.append(f"task   {t.name}: {_state_text(t.state)}, retries {t.retries}  [{' > '.join(t.history)}]")
    served: dict[str, list[str]] = {}
    wire: set[str] = set()
    for c in outcome.calls:
        key = c.endpoint or f"{c.method} {c.url} (unmatched)"
        served.setdefault(key, []).append(c.served)
        if c.transport == "wire":
            wire.add(key)
    for key, n in outcome.counts.items():
        over = "  (over the wire)" if key in wire else ""
        shown = ", ".join(served.get(key, [])) or "never called"
        lines.append(f"calls  {key}: {n}  [{shown}]{over}")
    for key, steps in served.items():
        if key not in outcome.counts:
            lines.append(f"calls  {key}: {len(steps)}")
    if outcome.result is not None:
        lines.append(f"result {plain(outcome.result)!r}")
    lines.append(
        f"time   {outcome.waited_s:g} s waited on the virtual clock; {outcome.virtual_s:.3f} s virtual, "
        f"{outcome.wall_s:.3f} s wall"
    )
    return lines
