"""A report flow that alerts when it fails, as teams wire Slack or a pager to Prefect's state hooks."""

from __future__ import annotations

from typing import Any

import httpx
from prefect import flow, task

SALES = "https://sales.example.test/v1/daily"
ALERTS = "https://alerts.example.test/hook"


def page_on_call(flow: Any, flow_run: Any, state: Any) -> None:
    httpx.post(ALERTS, json={"text": f"{flow.name} ended {state.name}"}, timeout=5.0)


def note_task_failure(task: Any, task_run: Any, state: Any) -> None:
    httpx.post(ALERTS, json={"text": f"{task.name} gave up: {state.message}"}, timeout=5.0)


@task(retries=2, retry_delay_seconds=30, on_failure=[note_task_failure])
def fetch_daily_sales() -> dict[str, Any]:
    response = httpx.get(SALES, timeout=10.0)
    response.raise_for_status()
    return response.json()


@flow(on_failure=[page_on_call])
def daily_sales_report() -> int:
    """One fetch, retried twice; a task that gives up posts a note, a flow that fails pages whoever is on call."""
    return int(fetch_daily_sales()["total"])
