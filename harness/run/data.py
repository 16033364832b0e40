"""Where a run's data is read: the rows a flow stored, by its scenario's ``expect.sqlite`` or its module's word."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from harness.scenario.model import Scenario, SqliteExpect
from harness.scenario.resolve import stored_rows_of


def data_query(scenario: Scenario, flow: Any) -> SqliteExpect | None:
    """Where the rows a flow stores are read: ``expect.sqlite``, else what the flow's module declares.

    A flow module declares it with ``harness_stored_rows(parameters) -> (path, query)``
    (the built-in ``cfpb_etl`` does), so data invariants can judge it without ``expect.sqlite``.
    """
    if scenario.expect.sqlite is not None:
        return scenario.expect.sqlite
    declared = stored_rows_of(flow)
    if declared is None:
        return None
    path, query = declared(scenario.parameters)
    return SqliteExpect(path=path, query=query, equals=None)


def read_rows(workdir: Path, spec: SqliteExpect | None) -> tuple[Any, str | None]:
    """The data query's result after the run: one value, or rows; or why it could not be read."""
    if spec is None:
        return None, None
    db = workdir / spec.path
    if not db.exists():
        return None, f"no database at {spec.path}"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = [list(r) for r in conn.execute(spec.query).fetchall()]
    except sqlite3.Error as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if len(rows) == 1 and len(rows[0]) == 1:
        return rows[0][0], None
    return rows, None
