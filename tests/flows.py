"""Flows the tests run through the harness, named by import path (``tests.flows:...``)."""

from __future__ import annotations

import httpx
from prefect import flow, task


@task(retries=1)
def ping(url: str) -> int:
    return httpx.get(url).status_code


@flow
def swallowing_flow(url: str) -> str:
    """Catches every exception, as careless flows do: the harness must still fail closed."""
    try:
        return str(ping(url))
    except Exception as exc:
        return f"caught {type(exc).__name__}"


@task(retries=1, retry_delay_seconds=0.2)
def ping_with_delay(url: str) -> int:
    response = httpx.get(url)
    response.raise_for_status()
    return response.status_code


@flow
def delayed_ping(url: str) -> int:
    return ping_with_delay(url)


@task
def write_file(name: str) -> str:
    with open(name, "w") as f:
        f.write("data")
    return name


@flow
def file_writer(name: str = "out.txt") -> str:
    """Writes a relative path: it must land in the scenario's own temporary directory."""
    return write_file(name)


@task
def fetch(url: str) -> int:
    return httpx.get(url).status_code


@flow
def mapped_fetch(urls: list[str]) -> list[int]:
    """Mapped task runs on the default thread-pool task runner: concurrent calls."""
    return fetch.map(urls).result()


@task(retries=1, timeout_seconds=0.2)
def slow_fetch(url: str) -> int:
    return httpx.get(url).status_code


@flow
def quick_deadline(url: str = "https://api.example.test/slow") -> int:
    """A 0.2 s task timeout: on the virtual clock as on the wall clock."""
    return slow_fetch(url)
