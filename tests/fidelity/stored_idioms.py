"""A flow that stores rows in SQLite, then acknowledges them: a retried store writes them again.

``harness_stored_rows`` tells the harness (and the reference) where the rows are read after the run.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
from prefect import flow, task

DB = "stored.db"


@task(retries=2, retry_delay_seconds=0.02)
def fetch_rows(url: str) -> list[dict[str, Any]]:
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return list(response.json()["items"])


@task(retries=1, retry_delay_seconds=0.02)
def store_rows(rows: list[dict[str, Any]], ack_url: str) -> int:
    with sqlite3.connect(DB) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS item (id INTEGER)")
        conn.executemany("INSERT INTO item (id) VALUES (?)", [(row["id"],) for row in rows])
    conn.close()
    httpx.post(ack_url, timeout=5.0).raise_for_status()  # after the commit: a failed ack stores them again
    return len(rows)


@flow
def stores_then_acknowledges(url: str, ack_url: str) -> int:
    """Fetch rows, store them, acknowledge the store."""
    return store_rows(fetch_rows(url), ack_url)


def harness_stored_rows(parameters: dict[str, Any]) -> tuple[str, str]:
    return DB, "SELECT COUNT(*) FROM item"
