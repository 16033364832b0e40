"""The study's two flows as the study wrote them, on ``requests`` and ``httpx``: only the Prefect 3 decorators kept.

From the seed text (Prefect 2 syntax, which Prefect 3 runs unchanged). The
text lost its underscores in extraction (``get complaint data``,
``row.get(' source')``): they are restored. Its own defects are kept:
``date_recieved`` is not a field of the API (``date_received`` is), so every
date is stored as NULL; ``requests.get`` has no timeout, so a stalled
server holds the task until the scenario's time limit; and the GitHub task
prints its count and returns nothing. The ETL's ``requests`` goes over the
wire by itself; the GitHub flow's ``httpx`` does with ``transport: wire``.
"""

# ruff: noqa: UP006, UP035, SIM117 (the study's own typing.List and nested with)
from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from contextlib import closing
from typing import List

import httpx
import requests
from prefect import flow, task


## extract
@task
def get_complaint_data():
    r = requests.get(
        "https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/", params={"size": 10}
    )
    response_json = json.loads(r.text)
    return response_json["hits"]["hits"]


@task
def parse_complaint_data(raw):
    complaints = []
    Complaint = namedtuple("Complaint", ["data_received", "state", "product", "company", "complaint_what_happened"])
    for row in raw:
        source = row.get("_source")
        this_complaint = Complaint(
            data_received=source.get("date_recieved"),
            state=source.get("state"),
            product=source.get("product"),
            company=source.get("company"),
            complaint_what_happened=source.get("complaint_what_happened"),
        )
        complaints.append(this_complaint)
    return complaints


@task
def store_complaints(parsed):
    create_script = (
        "CREATE TABLE IF NOT EXISTS complaint (timestamp TEXT, state TEXT, product TEXT, company TEXT, "
        "complaint_what_happened TEXT)"
    )
    insert_cmd = "INSERT INTO complaint VALUES (?, ?, ?, ?, ?)"
    with closing(sqlite3.connect("cfpbcomplaints.db")) as conn:
        with closing(conn.cursor()) as cursor:
            cursor.executescript(create_script)
            cursor.executemany(insert_cmd, parsed)
            conn.commit()


@flow(name="my etl flow")
def my_etl_flow():
    raw = get_complaint_data()
    parsed = parse_complaint_data(raw)
    store_complaints(parsed)


@task(retries=3)
def get_stars(repo: str):
    url = f"https://api.github.com/repos/{repo}"
    count = httpx.get(url).json()["stargazers_count"]
    print(f"{repo} has {count} stars!")


@flow(name="GitHub Stars")
def github_stars(repos: List[str]):
    for repo in repos:
        get_stars(repo)
