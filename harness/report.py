"""Reports of scenario runs: the terminal table and the JSON CI pipelines read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness._errors import shown
from harness.expectations import Mismatch, plain
from harness.model import Scenario
from harness.runner import Outcome


@dataclass(frozen=True, slots=True)
class Result:
    """One scenario's verdict: passed, or failed with mismatches or an error."""

    name: str
    file: str
    line: int
    outcome: Outcome | None = None
    mismatches: tuple[Mismatch, ...] = ()
    error: str | None = None
    xfail: str | None = None
    failures: tuple[str, ...] = field(default=())

    @property
    def failed_expectations(self) -> bool:
        return bool(self.mismatches or self.error)

    @property
    def passed(self) -> bool:
        """True when the verdict is what the scenario asks for (an ``xfail`` scenario must fail)."""
        if self.xfail is not None:
            return bool(self.mismatches) and self.error is None
        return not self.failed_expectations

    @property
    def verdict(self) -> str:
        if self.xfail is not None:
            return "xfail" if self.passed else ("XPASS" if not self.failed_expectations else "ERROR")
        if self.error:
            return "ERROR"
        return "pass" if self.passed else "FAIL"

    @classmethod
    def of(cls, scenario: Scenario, outcome: Outcome | None, mismatches: list[Mismatch], error: str | None = None) -> Result:
        failures = tuple(f"{shown(scenario.path)}:{m.line}: {m}" for m in mismatches) + ((error,) if error else ())
        return cls(scenario.name, shown(scenario.path), scenario.line, outcome, tuple(mismatches), error, scenario.xfail, failures)


def as_json(result: Result) -> dict[str, Any]:
    """The JSON record of one scenario, as ``harness run --json`` writes it."""
    o = result.outcome
    return {
        "name": result.name,
        "file": result.file,
        "line": result.line,
        "passed": result.passed,
        "verdict": result.verdict,
        "failures": list(result.failures),
        "flow": None if o is None else {"state": o.flow.name, "type": o.flow.type, "message": o.flow.message},
        "tasks": [] if o is None else [
            {"name": t.name, "state": t.state.name, "run_count": t.run_count, "retries": t.retries, "history": list(t.history)}
            for t in o.tasks
        ],
        "calls": {} if o is None else dict(o.counts),
        "unmatched": [] if o is None else [f"{c.method} {c.url}" for c in o.unmatched],
        "result": None if o is None else _jsonable(plain(o.result)),
        "wall_s": None if o is None else round(o.wall_s, 4),
        "virtual_s": None if o is None else round(o.virtual_s, 4),
        "timeline": [] if o is None else [[round(t, 4), what] for t, what in o.timeline],
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def write_json(results: list[Result], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"scenarios": [as_json(r) for r in results]}, indent=2) + "\n")


def table(results: list[Result]) -> str:
    """One row per scenario: name, verdict, flow state, retries per task, calls."""
    rows = [("scenario", "verdict", "flow", "retries", "calls", "virtual s", "wall s")]
    for r in results:
        o = r.outcome
        if o is None:
            rows.append((r.name, r.verdict, "-", "-", "-", "-", "-"))
            continue
        retries = ", ".join(f"{t.name}={t.retries}" for t in o.tasks) or "-"
        calls = ", ".join(str(n) for n in o.counts.values()) or "-"
        rows.append((r.name, r.verdict, o.flow.name, retries, calls, f"{o.virtual_s:.2f}", f"{o.wall_s:.2f}"))
    widths = [min(max(len(row[i]) for row in rows), 60 if i == 0 else 40) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [(c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(row, widths, strict=True)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
