"""Reports of scenario runs: the terminal table and the JSON CI pipelines read."""

from __future__ import annotations

import json
import math
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
    def of(
        cls, scenario: Scenario, outcome: Outcome | None, mismatches: list[Mismatch],
        error: str | None = None, label: str | None = None,
    ) -> Result:
        failures = tuple(f"{shown(scenario.path)}:{m.line}: {m}" for m in mismatches) + ((error,) if error else ())
        return cls(label or scenario.name, shown(scenario.path), scenario.line, outcome, tuple(mismatches), error, scenario.xfail, failures)


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
        "waited_s": None if o is None else round(o.waited_s, 4),
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


# -- strategy comparison ------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _rows_text(cell: Any) -> str:
    if cell.rows_missing is None:
        return "-"
    return f"{cell.rows_missing:g} / {cell.rows_duplicated:g}"


COMPARE_HEADER = (
    "scenario", "strategy", "runs", "success", "95% CI", "attempts mean/p95", "calls/run",
    "wasted/run", "virtual s mean/p95", "rows missing/dup",
)


def _compare_rows(cells: list[Any]) -> list[tuple[str, ...]]:
    return [
        (
            c.scenario, c.strategy, str(c.runs), _pct(c.success_rate),
            f"{_pct(c.success_ci[0])}-{_pct(c.success_ci[1])}",
            f"{c.attempts_mean:.2f} / {c.attempts_p95:g}", f"{c.calls_mean:.2f}", f"{c.wasted_calls:.2f}",
            f"{c.virtual_s_mean:.1f} / {c.virtual_s_p95:.1f}", _rows_text(c),
        )
        for c in cells
    ]


def compare_table(cells: list[Any]) -> str:
    """The comparison as an aligned terminal table."""
    rows = [COMPARE_HEADER, *_compare_rows(cells)]
    widths = [min(max(len(r[i]) for r in rows), 48) for i in range(len(COMPARE_HEADER))]
    return "\n".join(
        "  ".join((c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


def compare_markdown(cells: list[Any], policies: list[Any], seeds: int) -> str:
    """The comparison as GitHub Markdown (fits ``$GITHUB_STEP_SUMMARY``)."""
    out = [f"## Fault-tolerance strategies compared (seeds 0..{seeds - 1} for random scenarios)", ""]
    out.append("| " + " | ".join(COMPARE_HEADER) + " |")
    out.append("|" + "---|" * len(COMPARE_HEADER))
    out += ["| " + " | ".join(r) + " |" for r in _compare_rows(cells)]
    out += ["", "### Strategies", "", "| strategy | Prefect options that reproduce it | what it is |", "|---|---|---|"]
    for p in policies:
        what = p.description + (f" (source: {p.source})" if p.source else "")
        out.append(f"| {p.name} | `{p.task_options()}` | {what} |")
    return "\n".join(out) + "\n"


def compare_json(cells: list[Any], policies: list[Any], seeds: int) -> dict[str, Any]:
    return {
        "seeds": seeds,
        "strategies": {
            p.name: {"description": p.description, "source": p.source, "options": p.task_options()} for p in policies
        },
        "cells": [c.as_json() for c in cells],
    }


def _panel(scenario: str, cells: list[Any]) -> str:
    """One SVG panel: success rate (y) against mean calls per run (x), a labelled point per strategy."""
    import html

    w, h, left, bottom, top, right = 440, 300, 56, 48, 34, 24
    xmax = max(max(c.calls_mean for c in cells) * 1.15, 1.0)
    px = lambda x: left + (w - left - right) * x / xmax  # noqa: E731
    py = lambda y: top + (h - top - bottom) * (1 - y)  # noqa: E731
    parts = [
        f'<svg class="panel" role="img" aria-label="{html.escape(scenario)}" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{w / 2}" y="18" text-anchor="middle" class="title">{html.escape(scenario)}</text>',
        f'<line x1="{left}" y1="{py(0)}" x2="{w - right}" y2="{py(0)}" class="axis"/>',
        f'<line x1="{left}" y1="{py(0)}" x2="{left}" y2="{py(1)}" class="axis"/>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{left}" y1="{py(tick)}" x2="{w - right}" y2="{py(tick)}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{py(tick) + 4}" text-anchor="end" class="tick">{_pct(tick)}</text>')
    step = max(1, math.ceil(xmax / 6))
    for x in range(0, int(xmax) + 1, step):
        parts.append(f'<text x="{px(x)}" y="{py(0) + 16}" text-anchor="middle" class="tick">{x}</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 8}" text-anchor="middle" class="label">mean calls per run</text>')
    parts.append(
        f'<text x="14" y="{(top + h - bottom) / 2}" text-anchor="middle" class="label" '
        f'transform="rotate(-90 14 {(top + h - bottom) / 2})">success rate</text>'
    )
    for i, c in enumerate(cells):
        x, y = px(c.calls_mean), py(c.success_rate)
        lo, hi = py(c.success_ci[0]), py(c.success_ci[1])
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<line x1="{x}" y1="{lo}" x2="{x}" y2="{hi}" stroke="{colour}" stroke-width="2" opacity="0.5"/>')
        parts.append(f'<circle cx="{x}" cy="{y}" r="6" fill="{colour}" class="point"><title>'
                     f'{html.escape(c.strategy)}: {_pct(c.success_rate)} success, {c.calls_mean:.2f} calls/run</title></circle>')
        parts.append(f'<text x="{x + 9}" y="{y - 8 - 11 * (i % 3)}" class="point-label" fill="{colour}">{html.escape(c.strategy)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def compare_html(cells: list[Any], policies: list[Any], seeds: int) -> str:
    """A self-contained page: one chart panel per scenario, then the table and the strategies."""
    import html

    by_scenario: dict[str, list[Any]] = {}
    for c in cells:
        by_scenario.setdefault(c.scenario, []).append(c)
    panels = "\n".join(_panel(name, group) for name, group in by_scenario.items())
    head = "".join(f"<th>{html.escape(h)}</th>" for h in COMPARE_HEADER)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in _compare_rows(cells))
    strategies = "\n".join(
        f"<tr><td>{html.escape(p.name)}</td><td><code>{html.escape(p.task_options())}</code></td>"
        f"<td>{html.escape(p.description)}{' (source: ' + html.escape(p.source) + ')' if p.source else ''}</td></tr>"
        for p in policies
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Fault-tolerance strategies compared</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
.panels {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.panel {{ border: 1px solid #ddd; background: #fff; }}
.title {{ font-weight: 600; font-size: 13px; }}
.axis {{ stroke: #333; stroke-width: 1.2; }}
.grid {{ stroke: #eee; }}
.tick {{ font-size: 11px; fill: #555; }}
.label {{ font-size: 12px; fill: #222; }}
.point-label {{ font-size: 11px; font-weight: 600; }}
table {{ border-collapse: collapse; margin-top: 24px; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; }}
</style></head><body>
<h1>Fault-tolerance strategies compared</h1>
<p>Each panel is one scenario: success rate (with its 95% Wilson interval) against mean calls per run,
one point per strategy. Up and to the left is better. Random scenarios ran seeds 0..{seeds - 1}.</p>
<div class="panels">
{panels}
</div>
<table id="cells"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<table id="strategies"><thead><tr><th>strategy</th><th>Prefect options</th><th>what it is</th></tr></thead><tbody>
{strategies}
</tbody></table>
</body></html>
"""
