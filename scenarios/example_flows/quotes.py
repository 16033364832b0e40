"""A flow that retries only what a retry can fix: 5xx answers, timeouts and connection errors.

The task calls ``raise_for_status()``, so the retry condition judges by the
exception: a 4xx (or a body that is not JSON) fails the task at once, however
many retries are left. That is a choice, and ``harness explore`` shows its
price: a single 4xx answer fails the flow.
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect import flow, task

BASE_URL = "https://quotes.example.test/v1/quotes"


def retry_on_5xx_or_timeout(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry 5xx answers and transport errors, nothing else."""
    try:
        state.result()
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code >= 500
    except httpx.TransportError:  # timeouts, refused or reset connections, protocol errors
        return True
    except Exception:
        return False
    return False


@task(retries=3, retry_condition_fn=retry_on_5xx_or_timeout)
def fetch_quote(symbol: str) -> float:
    response = httpx.get(f"{BASE_URL}/{symbol}")
    response.raise_for_status()
    return float(response.json()["price"])


@flow
def quote_report(symbols: list[str]) -> dict[str, float]:
    """The latest price of each symbol."""
    return {symbol: fetch_quote(symbol) for symbol in symbols}
