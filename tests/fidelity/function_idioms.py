"""Flows of the function-fault oracle: a store into SQLite and an export to a file, each with its own retries
and a retry condition written as users write one (a database's busy, locked or I/O error is worth a retry,
nothing else is). Plain Prefect: the harness faults their calls, the reference makes the real ones fail.

``FAILED`` is the reference's hand on each failure the condition judges (it frees a lock it holds, say);
the harness never adds to it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

from prefect import flow, task

FAILED: list[Callable[[BaseException], None]] = []
COUNT = "SELECT COUNT(*) FROM t"


def retry_when_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:
        for hook in FAILED:
            hook(exc)
        return isinstance(exc, sqlite3.Error) and (exc.sqlite_errorcode & 0xFF) in (5, 6, 10)
    return False


@task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_when_transient)
def store(db_path: str, rows: int, timeout: float, max_pages: int) -> int:
    with closing(sqlite3.connect(db_path, timeout=timeout)) as conn:
        if max_pages:  # a database that may grow to this many pages, and no further
            conn.execute(f"PRAGMA max_page_count = {max_pages}")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 1500,) for _ in range(rows)])
        conn.commit()
    return rows


@flow
def stored(db_path: str = "rows.db", rows: int = 3, timeout: float = 0.05, max_pages: int = 0) -> int:
    return store(db_path, rows, timeout, max_pages)


@task(retries=1, retry_delay_seconds=0, retry_condition_fn=retry_when_transient)
def export(path: str, text: str) -> int:
    with open(path, "w") as out:
        out.write(text)
    return len(text)


@flow
def exported(path: str = "out.txt", text: str = "x" * 100) -> int:
    return export(path, text)


def harness_stored_rows(parameters: dict[str, Any]) -> tuple[str, str]:
    """Where the rows are read back, on both sides: (SQLite path, query)."""
    return str(parameters.get("db_path", "rows.db")), COUNT


def slow(seconds: float) -> float:
    """A call that takes ``seconds`` (the reference's real ones; the harness's latency instead)."""
    time.sleep(seconds)
    return seconds


@task(timeout_seconds=0.2)
def waits(seconds: float) -> float:
    return slow(seconds)


@flow
def waited(seconds: float = 0.0) -> float:
    return waits(seconds)
