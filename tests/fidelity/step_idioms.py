"""Flows for the cases of ``step_cases``: each step kind of the language met by a plain retrying flow."""

from __future__ import annotations

from typing import Any

import httpx
from prefect import flow, task


@task(retries=3, retry_delay_seconds=0.1)
def fetch_body(url: str) -> Any:
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.json()


@flow
def fetch_with_retries(url: str) -> Any:
    """One task, three retries 0.1 s apart, parsing the body as JSON."""
    return fetch_body(url)


@task(retries=2, retry_delay_seconds=0.1)
def fetch_impatiently(url: str) -> Any:
    response = httpx.get(url, timeout=0.2)  # the client's own read timeout
    response.raise_for_status()
    return response.json()


@flow
def client_timeout_then_retry(url: str) -> Any:
    """httpx's read timeout of 0.2 s against a slower answer, then a retry."""
    return fetch_impatiently(url)


@task(retries=1, retry_delay_seconds=0.1, timeout_seconds=0.3)
def fetch_within_the_task_timeout(url: str) -> Any:
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.json()


@flow
def task_timeout_cuts_the_answer(url: str) -> Any:
    """A task's timeout_seconds=0.3 against an answer 0.6 s away, then a retry."""
    return fetch_within_the_task_timeout(url)


@task(retries=5, retry_delay_seconds=1.0)
def fetch_until_open(url: str) -> Any:
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.json()


@flow
def retries_through_a_window(url: str) -> Any:
    """Retries a second apart against an endpoint down for its first second and a half: calls at about 0, 1
    and 2 s, wherever the compute before the first call puts them (up to half a second)."""
    return fetch_until_open(url)


@task(retries=6, retry_delay_seconds=0.02)
def fetch_through_chaos(url: str) -> Any:
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.json()


@flow
def mapped_through_chaos(urls: list[str]) -> Any:
    """Three mapped task runs, each against an endpoint of its own drawing seeded chaos."""
    return fetch_through_chaos.map(urls).result()


@flow
def sequential_latencies(urls: list[str]) -> Any:
    """Calls one after another, each answer delayed: their latencies add up."""
    return [fetch_body(url) for url in urls]


# -- clients respx cannot see: on the wire ------------------------------------------------------


@task(retries=3, retry_delay_seconds=0.05)
def fetch_with_requests(url: str) -> Any:
    import requests

    response = requests.get(url, timeout=0.5)
    response.raise_for_status()
    return response.json()


@flow
def requests_with_retries(url: str) -> Any:
    """A task on requests (urllib3 sockets), three retries."""
    return fetch_with_requests(url)


@task(retries=2, retry_delay_seconds=0.05)
def fetch_with_urllib(url: str) -> Any:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=0.5) as response:
        return json.loads(response.read())


@flow
def urllib_with_retries(urls: list[str]) -> Any:
    """Tasks on the standard library's urlopen, one per URL, two retries each."""
    return [fetch_with_urllib(url) for url in urls]
