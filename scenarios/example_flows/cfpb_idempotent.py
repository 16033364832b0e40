"""The CFPB ETL with an idempotent write: run again after a crash, it stores every complaint once.

The as-written flow (``harness.flows.cfpb``) appends every row it is given:
a process that dies after ``store_complaints`` committed, and the flow run
again, stores each complaint twice. Here each row is keyed on the
complaint's id and written with ``INSERT OR IGNORE`` in one transaction:
a second write of the same complaints changes nothing, whatever point the
first run died at.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from prefect import flow, task

from harness.flows.cfpb import get_complaint_data


@task
def parse_complaints(raw: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str, str]]:
    """Each hit's id and the fields the study stores."""
    fields = ("date_received", "state", "product", "company", "complaint_what_happened")
    return [(row["_source"]["complaint_id"], *(row["_source"].get(f) for f in fields)) for row in raw]


@task
def store_complaints(parsed: list[tuple[str, ...]], db_path: str = "cfpbcomplaints.db") -> int:
    """Store each complaint once: keyed on its id, a row already there is left as it is."""
    with closing(sqlite3.connect(db_path)) as conn, conn:  # one transaction: all rows or none
        conn.execute(
            "CREATE TABLE IF NOT EXISTS complaint (complaint_id TEXT PRIMARY KEY, timestamp TEXT, "
            "state TEXT, product TEXT, company TEXT, complaint_what_happened TEXT)"
        )
        conn.executemany("INSERT OR IGNORE INTO complaint VALUES (?, ?, ?, ?, ?, ?)", parsed)
    return len(parsed)


@flow(name="idempotent etl flow")
def cfpb_etl_idempotent(size: int = 10, db_path: str = "cfpbcomplaints.db") -> int:
    """Fetch ``size`` complaints, parse them and store each once; return the rows given to the store."""
    raw = get_complaint_data(size)
    parsed = parse_complaints(raw)
    return store_complaints(parsed, db_path)


def harness_stored_rows(parameters: dict[str, Any]) -> tuple[str, str]:
    """Where this flow's rows are read for the data invariants: (SQLite path, query)."""
    return str(parameters.get("db_path", "cfpbcomplaints.db")), "SELECT COUNT(*) FROM complaint"
