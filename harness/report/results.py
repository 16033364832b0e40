"""Reports of scenario runs: the terminal table and the JSON CI pipelines read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.checking.expectations import plain
from harness.checking.verdict import Result


def as_json(result: Result) -> dict[str, Any]:
    """The JSON record of one scenario, as ``harness run --json`` writes it."""
    o = result.outcome
    return {
        "name": result.name,
        "file": result.file,
        "line": result.line,
        "passed": result.passed,
        "verdict": result.verdict,
        "skipped": result.skipped,
        "failures": list(result.failures),
        **({"flow": None, "tasks": []} if o is None else _run_json(o)),
        "crashed": None if o is None or not o.crashed else o.crashed,
        "flow_runs": [] if o is None else [{**_run_json(r), "result": _jsonable(plain(r.result))} for r in o.runs],
        "calls": {} if o is None else dict(o.counts),
        "hooks": [] if o is None else [{"owner": w, "name": n, "kind": k} for w, n, k in o.hooks],
        "unmatched": [] if o is None else [f"{c.method} {c.url}" for c in o.unmatched],
        "call_log": []
        if o is None
        else [
            {"request": f"{c.method} {c.url}", "endpoint": c.endpoint, "served": c.served, "transport": c.transport}
            for c in o.calls
        ],
        "raised": None if o is None else o.raised,
        "prefect_api": None if o is None or not o.api_calls else _api_json(o),
        "server": None if o is None or o.server is None else _server_json(o.server),
        "slots": None if o is None or not o.slots else _slots_json(o.slots),
        "result": None if o is None else _jsonable(plain(o.result)),
        "wall_s": None if o is None else round(o.wall_s, 4),
        "virtual_s": None if o is None else round(o.virtual_s, 4),
        "waited_s": None if o is None else round(o.waited_s, 4),
        "timeline": [] if o is None else [[round(t, 4), what] for t, what in o.timeline],
    }


def _run_json(o: Any) -> dict[str, Any]:
    """A flow run's final state and task runs (the last run's, for a history)."""
    return {
        "flow": {"state": o.flow.name, "type": o.flow.type, "message": o.flow.message},
        "tasks": [
            {
                "name": t.name,
                "state": t.state.name,
                "run_count": t.run_count,
                "retries": t.retries,
                "history": list(t.history),
            }
            for t in o.tasks
        ],
    }


def _api_json(o: Any) -> dict[str, Any]:
    """The flow's requests to Prefect's API: per route, and each with what served it."""
    return {
        "calls": dict(o.api_counts),
        "call_log": [
            {"at": round(c.at, 4), "route": c.endpoint, "served": c.served, "status": c.status} for c in o.api_calls
        ],
    }


def _slots_json(slots: dict[str, Any]) -> dict[str, Any]:
    """Per concurrency limit: its size, the slots it held after the run, and each wait for one."""
    return {
        name: {
            "limit": s.limit,
            "held_after": s.held_after,
            "waited": [{"task": task, "seconds": seconds} for task, seconds in s.waited],
        }
        for name, s in slots.items()
    }


def _server_json(view: Any) -> dict[str, Any]:
    """What the server recorded: the flow run's state, each task's last run's, and flow runs left unfinished."""
    return {
        "flow": _recorded_json(view.flow),
        "tasks": {name: _recorded_json(s) for name, s in view.tasks.items()},
        "orphans": list(view.orphans),
    }


def _recorded_json(state: Any) -> dict[str, Any] | None:
    return None if state is None else {"state": state.name, "type": state.type, "message": state.message}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def write_json(results: list[Result], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"scenarios": [as_json(r) for r in results]}, indent=2) + "\n")


def table(results: list[Result]) -> str:
    """One row per scenario: name, verdict, flow state, retries per task, calls, the seconds waited on the
    virtual clock (what ``expect.virtual_time`` checks: compute left out) and the wall seconds."""
    rows = [("scenario", "verdict", "flow", "retries", "calls", "waited s", "wall s")]
    for r in results:
        o = r.outcome
        if o is None:
            rows.append((r.name, r.verdict, "-", "-", "-", "-", "-"))
            continue
        retries = ", ".join(f"{t.name}={t.retries}" for t in o.tasks) or "-"
        calls = ", ".join(str(n) for n in o.counts.values()) or "-"
        rows.append((r.name, r.verdict, o.flow.name, retries, calls, f"{o.waited_s:.2f}", f"{o.wall_s:.2f}"))
    widths = [min(max(len(row[i]) for row in rows), 60 if i == 0 else 40) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            (fit(c, w) if i == 0 else _cut_end(c, w)).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _cut_end(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def fit(name: str, width: int) -> str:
    """A scenario's name in ``width`` characters, cut in the middle: its end, and a strategy variant's
    ``[strategy]`` suffix, kept, so that two rows of one scenario still read apart."""
    if len(name) <= width:
        return name
    suffix = name[name.rindex("[") :] if name.endswith("]") and "[" in name else ""
    tail = max(min(len(suffix) + 12, width // 2), 1) if suffix else width // 3
    head = width - 1 - tail
    return name[:head] + "…" + name[len(name) - tail :]
