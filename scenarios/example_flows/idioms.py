"""Flows in idioms of public Prefect projects whose behaviour under faults surprises users.

Each is also one of the fidelity check's idioms (``tests/fidelity``): what the
scenarios in ``idioms.yaml`` state is what Prefect's own engine does.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from prefect import flow, task
from prefect.tasks import task_input_hash

API = "https://inventory.example.test/v1"


@task(retries=3)
def stock_level(sku: str) -> int:
    response = httpx.get(f"{API}/stock/{sku}")
    response.raise_for_status()
    return int(response.json()["level"])


@flow
def refresh_stock_levels(skus: list[str]) -> str:
    """Submits a task per SKU and returns without waiting on the futures."""
    for sku in skus:
        stock_level.submit(sku)
    return f"refresh requested for {len(skus)} SKU(s)"


@flow
def stock_levels(skus: list[str]) -> list[int]:
    """Maps the task over the SKUs and waits on every result."""
    return stock_level.map(skus).result()


@task(retries=2, cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def price_list(region: str) -> dict[str, float]:
    response = httpx.get(f"{API}/prices", params={"region": region})
    response.raise_for_status()
    return dict(response.json()["prices"])


@flow
def cached_prices(region: str = "eu") -> int:
    """A task cached on its inputs for an hour."""
    return len(price_list(region))


@task(retries=3, retry_delay_seconds=120)
def patient_stock_level(sku: str) -> int:
    response = httpx.get(f"{API}/stock/{sku}")
    response.raise_for_status()
    return int(response.json()["level"])


@flow(timeout_seconds=300)
def stock_check_within_five_minutes(sku: str = "A-1") -> int:
    """Three two-minute retry delays do not fit in the flow's five-minute timeout."""
    return patient_stock_level(sku)
