"""The strategy comparison as text: the terminal table, Markdown for a CI summary, and JSON."""

from __future__ import annotations

from typing import Any


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _rows_text(cell: Any) -> str:
    if cell.rows_missing is None:
        return "-"
    return f"{cell.rows_missing:g} / {cell.rows_duplicated:g}"


COMPARE_HEADER = (
    "scenario",
    "strategy",
    "runs",
    "success",
    "95% CI",
    "attempts mean/p95",
    "calls/run",
    "wasted/run",
    "virtual s mean/p95",
    "rows missing/dup",
)


def compare_rows(cells: list[Any]) -> list[tuple[str, ...]]:
    return [
        (
            c.scenario,
            c.strategy,
            str(c.runs),
            pct(c.success_rate),
            f"{pct(c.success_ci[0])}-{pct(c.success_ci[1])}",
            f"{c.attempts_mean:.2f} / {c.attempts_p95:g}",
            f"{c.calls_mean:.2f}",
            f"{c.wasted_calls:.2f}",
            f"{c.virtual_s_mean:.1f} / {c.virtual_s_p95:.1f}",
            _rows_text(c),
        )
        for c in cells
    ]


def compare_table(cells: list[Any]) -> str:
    """The comparison as an aligned terminal table."""
    rows = [COMPARE_HEADER, *compare_rows(cells)]
    widths = [min(max(len(r[i]) for r in rows), 48) for i in range(len(COMPARE_HEADER))]
    return "\n".join(
        "  ".join((c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def compare_markdown(cells: list[Any], policies: list[Any], seeds: int) -> str:
    """The comparison as GitHub Markdown (fits ``$GITHUB_STEP_SUMMARY``)."""
    out = [f"## Fault-tolerance strategies compared (seeds 0..{seeds - 1} for random scenarios)", ""]
    out.append("| " + " | ".join(COMPARE_HEADER) + " |")
    out.append("|" + "---|" * len(COMPARE_HEADER))
    out += ["| " + " | ".join(_md(v) for v in r) + " |" for r in compare_rows(cells)]
    out += ["", "### Strategies", "", "| strategy | Prefect options that reproduce it | what it is |", "|---|---|---|"]
    for p in policies:
        what = p.description + (f" (source: {p.source})" if p.source else "")
        out.append(f"| {_md(p.name)} | `{_md(p.task_options())}` | {_md(what)} |")
    return "\n".join(out) + "\n"


def compare_json(cells: list[Any], policies: list[Any], seeds: int) -> dict[str, Any]:
    """The comparison for pipelines: ``{"seeds", "strategies", "cells": [...]}``."""
    return {
        "seeds": seeds,
        "strategies": {
            p.name: {"description": p.description, "source": p.source, "options": p.task_options()} for p in policies
        },
        "cells": [c.as_json() for c in cells],
    }
