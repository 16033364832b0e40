"""The study's CFPB consumer-complaints ETL: fetch, parse, store in SQLite.

Ported from the seed (Prefect 1 and ``requests``) to Prefect 3 and httpx with
its structure kept: three tasks, no retries. Two defects of the seed text are
repaired: it read ``row.get(' source')`` (the key is ``_source``) and
``date_recieved`` (the field is ``date_received``), so every parsed record was
empty.
"""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from contextlib import closing
from typing import Any

import httpx
from prefect import flow, task

URL = "https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/"

Complaint = namedtuple(
    "Complaint",
    ["date_received", "state", "product", "company", "complaint_what_happened"],
)


@task
def get_complaint_data(size: int = 10) -> list[dict[str, Any]]:
    r = httpx.get(URL, params={"size": size})
    response_json = json.loads(r.text)
    return response_json["hits"]["hits"]


@task
def parse_complaint_data(raw: list[dict[str, Any]]) -> list[Complaint]:
    complaints = []
    for row in raw:
        source = row.get("_source")
        complaints.append(
            Complaint(
                date_received=source.get("date_received"),
                state=source.get("state"),
                product=source.get("product"),
                company=source.get("company"),
                complaint_what_happened=source.get("complaint_what_happened"),
            )
        )
    return complaints


@task
def store_complaints(parsed: list[Complaint], db_path: str = "cfpbcomplaints.db") -> int:
    create_script = (
        "CREATE TABLE IF NOT EXISTS complaint (timestamp TEXT, state TEXT, "
        "product TEXT, company TEXT, complaint_what_happened TEXT)"
    )
    insert_cmd = "INSERT INTO complaint VALUES (?, ?, ?, ?, ?)"
    with closing(sqlite3.connect(db_path)) as conn, closing(conn.cursor()) as cursor:
        cursor.executescript(create_script)
        cursor.executemany(insert_cmd, parsed)
        conn.commit()
    return len(parsed)


@flow(name="my etl flow")
def cfpb_etl(size: int = 10, db_path: str = "cfpbcomplaints.db") -> int:
    """Fetch ``size`` complaints, parse them and store them; return the rows stored."""
    raw = get_complaint_data(size)
    parsed = parse_complaint_data(raw)
    return store_complaints(parsed, db_path)


def harness_stored_rows(parameters: dict[str, Any]) -> tuple[str, str]:
    """Where this flow's rows are read for the data invariants: (SQLite path, query)."""
    return str(parameters.get("db_path", "cfpbcomplaints.db")), "SELECT COUNT(*) FROM complaint"
