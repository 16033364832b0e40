"""Fault coverage of a scenario library: which kinds each flow and endpoint is tried with. Runs nothing.

A kind is ``fault:<name>`` for a transport fault, ``malformed:<name>`` for a
malformed body and ``status:<code>`` for a status served (an answer with no
``status`` serves 200). Faults on Prefect's own API are rows of their own, one
per route (``prefect_api: POST /flow_runs/*/set_state``), their kinds marked
``api:`` (``api:fault:lost_answer``, ``api:status:503``, ``api:pass``); the
events stream's are ``events:drop``, ``events:disconnect`` and ``events:pass``;
a function target's (``functions: sqlite3:commit``) are ``function:<kind>``
for a ready kind, ``function:raise:<Error>`` for an exception of the user's
and ``function:pass``.
A scripted step (``responses:``) counts once however many ``times`` it
serves; a chaos option (each of ``chaos.faults``, and ``otherwise``) counts
once too. ``require`` names, per flow, the kinds no
scripted step serves, so that CI can hold a library to a coverage rule.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness._errors import UsageError, shown
from harness.scenario.kinds import KINDS as READY_KINDS
from harness.scenario.model import API_FAULTS, FAULTS, MALFORMED, UNSET, EventStep, FunctionStep, Scenario, Step

KINDS = tuple(f"fault:{f}" for f in FAULTS) + tuple(f"malformed:{m}" for m in MALFORMED)
API_KINDS = (
    *(f"api:fault:{f}" for f in FAULTS + API_FAULTS),
    "api:pass",
    "events:pass",
    "events:drop",
    "events:disconnect",
)
FUNCTION_KINDS = (*(f"function:{k}" for k in READY_KINDS), "function:pass")


@dataclass(slots=True)
class Row:
    """One flow and endpoint: the kinds its scripted steps and its chaos options serve, counted."""

    flow: str
    endpoint: str
    scripted: Counter[str] = field(default_factory=Counter)
    chaos: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "endpoint": self.endpoint,
            "scripted": dict(sorted(self.scripted.items())),
            "chaos": dict(sorted(self.chaos.items())),
        }


def kinds_of(step: Step) -> list[str]:
    """The kinds one step serves."""
    if step.pass_:
        return ["pass"]
    if step.fault:
        return [f"fault:{step.fault}"]
    if step.malformed:
        return [f"malformed:{step.malformed}"] + ([f"status:{step.status}"] if step.status is not None else [])
    return [f"status:{step.status or 200}"]


def rows(scenarios: list[Scenario]) -> list[Row]:
    """One row per flow (as written) and endpoint, in the order they first appear."""
    out: dict[tuple[str, str], Row] = {}
    for scenario in scenarios:
        for endpoint in scenario.endpoints:
            key = (scenario.flow, endpoint.request.text)
            row = out.setdefault(key, Row(*key))
            for step in endpoint.responses:
                row.scripted.update(kinds_of(step))
            if endpoint.chaos is not None:
                for step in (*endpoint.chaos.faults, endpoint.chaos.otherwise):
                    row.chaos.update(kinds_of(step))
        for route in scenario.prefect_api:
            key = (scenario.flow, f"prefect_api: {route.request.text}")
            row = out.setdefault(key, Row(*key))
            for step in route.responses:
                row.scripted.update(f"api:{kind}" for kind in kinds_of(step))
            if route.chaos is not None:
                for step in (*route.chaos.faults, route.chaos.otherwise):
                    row.chaos.update(f"api:{kind}" for kind in kinds_of(step))
        for target in scenario.functions:
            key = (scenario.flow, f"functions: {target.call}")
            row = out.setdefault(key, Row(*key))
            row.scripted.update(_function_kind(step) for step in target.responses)
            if target.chaos is not None:
                row.chaos.update(_function_kind(step) for step in (*target.chaos.faults, target.chaos.otherwise))
        if scenario.events:
            key = (scenario.flow, "events: WS /events/in")
            row = out.setdefault(key, Row(*key))
            row.scripted.update(_event_kind(step) for step in scenario.events)
    return list(out.values())


def _function_kind(step: FunctionStep) -> str:
    if step.raise_ is None:
        return "function:pass"
    return f"function:{step.kind}" if step.kind else f"function:raise:{step.describe().removeprefix('raise ')}"


def _event_kind(step: EventStep) -> str:
    return "events:drop" if step.drop else "events:disconnect" if step.disconnect else "events:pass"


def checks(scenario: Scenario) -> list[str]:
    """What a scenario's ``expect`` asserts, as field names (``tasks.get_stars.retries``, ``calls``, ...)."""
    exp = scenario.expect
    out = []
    if exp.flow is not None:
        out.append("flow.state" if exp.flow.state else "flow.type" if exp.flow.type else "flow.message")
    if exp.result is not UNSET:
        out.append("result")
    for name, runs in exp.tasks.items():
        keys = {
            k for run in runs for k in ("state", "type", "message", "retries", "runs") if getattr(run, k) is not None
        }
        out += [f"tasks.{name}.{k}" for k in sorted(keys)]
    if exp.calls:
        out.append("calls")
    out += [key for key in ("sqlite", "virtual_time") if getattr(exp, key) is not None]
    out += [f"invariants.{inv}" for inv in exp.invariants]
    return out


def expand(patterns: list[str]) -> list[str]:
    """Required kinds, with ``fault:*``, ``malformed:*`` and ``api:fault:*`` standing for every kind of the
    language."""
    out: list[str] = []
    for pattern in patterns:
        matched = fnmatch.filter(KINDS + API_KINDS + FUNCTION_KINDS, pattern) if "*" in pattern else [pattern]
        if not matched:
            raise UsageError(
                f"{pattern!r} matches no kind; kinds are fault:<name>, malformed:<name>, status:<code>, and on "
                "Prefect's API api:fault:<name>, api:status:<code>, api:pass, events:<pass|drop|disconnect>, and on "
                "function targets function:<kind> (function:sqlite_busy), function:pass"
            )
        out += [k for k in matched if k not in out]
    return out


def missing(table: list[Row], required: list[str], flows: list[str] | None = None) -> dict[str, list[str]]:
    """Per flow (each of ``flows``, else every flow in ``table``), the required kinds no scripted step serves."""
    served: dict[str, Counter[str]] = {}
    for row in table:
        served.setdefault(row.flow, Counter()).update(row.scripted)
    out = {}
    for flow in flows or list(served):
        lacking = [kind for kind in required if not served.get(flow, Counter())[kind]]
        if lacking:
            out[flow] = lacking
    return out


def as_json(scenarios: list[Scenario], table: list[Row]) -> dict[str, Any]:
    """``{"rows": [...], "scenarios": [{"name", "file", "line", "flow", "checks", "strategies"}]}``."""
    return {
        "rows": [row.as_json() for row in table],
        "scenarios": [
            {
                "name": s.name,
                "file": shown(s.path),
                "line": s.line,
                "flow": s.flow,
                "checks": checks(s),
                "strategies": {name: checks(variant) for name, variant, _ in _variants(s)},
            }
            for s in scenarios
        ],
    }


def _variants(scenario: Scenario) -> list[tuple[str, Scenario, Any]]:
    return [(label.rpartition("[")[2].rstrip("]"), s, p) for label, s, p in scenario.cases()[1:]]


def text(table: list[Row]) -> str:
    """The terminal report: per flow, each endpoint's scripted kinds, then its chaos-only kinds."""
    lines: list[str] = []
    for flow in dict.fromkeys(row.flow for row in table):
        lines.append(flow)
        for row in (r for r in table if r.flow == flow):
            lines.append(f"  {row.endpoint}")
            lines.append(f"    scripted: {_counts(row.scripted) or '-'}")
            only_chaos = Counter({k: n for k, n in row.chaos.items() if not row.scripted[k]})
            if only_chaos:
                lines.append(f"    chaos only: {_counts(only_chaos)}")
    return "\n".join(lines)


def markdown(table: list[Row]) -> str:
    """The report as a Markdown table, one row per flow and endpoint."""
    out = ["## Fault coverage", "", "| flow | endpoint | scripted | chaos only |", "|---|---|---|---|"]
    for row in table:
        only_chaos = Counter({k: n for k, n in row.chaos.items() if not row.scripted[k]})
        cells = (row.flow, row.endpoint, _counts(row.scripted) or "-", _counts(only_chaos) or "-")
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in sorted(counter.items()))
