"""Flows for the cases of ``step_cases``: each step kind of the language met by a plain retrying flow."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prefect import flow, task
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from tests.fidelity.idioms import get_json


@task(retries=3, retry_delay_seconds=0.1)
def fetch_body(url: str) -> Any:
    return get_json(url)


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
    return get_json(url)


@flow
def task_timeout_cuts_the_answer(url: str) -> Any:
    """A task's timeout_seconds=0.3 against an answer 0.6 s away, then a retry."""
    return fetch_within_the_task_timeout(url)


@task(retries=5, retry_delay_seconds=1.0)
def fetch_until_open(url: str) -> Any:
    return get_json(url)


@flow
def retries_through_a_window(url: str) -> Any:
    """Retries a second apart against an endpoint down for its first 1.9 s (from the first call): calls at 0, 1
    and 2 s of waiting. Prefect's real time adds each attempt's compute (0.6 s on a loaded 2-core machine), which
    the harness's clock does not count: the second call is inside the window as long as that stays under 0.9 s."""
    return fetch_until_open(url)


@task(retries=6, retry_delay_seconds=0.02)
def fetch_through_chaos(url: str) -> Any:
    return get_json(url)


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


# -- a flow's deadline against concurrent task runs ------------------------------------------------


@task
def fetch_once(url: str) -> Any:
    return fetch_body.fn(url)


@task
async def afetch_once(url: str) -> Any:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(url)
    response.raise_for_status()
    return response.json()


@task(retries=1, retry_delay_seconds=1.0)
def fetch_after_a_second(url: str) -> Any:
    return fetch_body.fn(url)


@task(retries=1, retry_delay_seconds=1.0)
async def afetch_after_a_second(url: str) -> Any:
    return await afetch_once.fn(url)


@flow(timeout_seconds=0.5)
def returns_before_its_deadline(slow: str, fast: str) -> Any:
    """A slow task run submitted and never waited on, a fast one called: the flow returns well within 0.5 s."""
    fetch_once.submit(slow)
    return fetch_once(fast)


@flow(timeout_seconds=0.5)
def first_of_two_within_the_deadline(fast: str, slow: str) -> Any:
    """The first of two submitted runs to finish, by as_completed: the fast one, within 0.5 s."""
    futures = [fetch_once.submit(fast), fetch_once.submit(slow)]
    return next(iter(as_completed(futures))).result()


@flow(timeout_seconds=0.5)
async def created_task_left_running(slow: str, fast: str) -> Any:
    """asyncio.create_task on a slow async task, then a fast one awaited: the flow returns within 0.5 s."""
    pending = asyncio.create_task(afetch_once(slow))
    await asyncio.sleep(0.05)
    result = await afetch_once(fast)
    pending.cancel()
    return result


@flow(timeout_seconds=0.5)
async def gathered_answers_past_the_deadline(urls: list[str]) -> Any:
    """Two async task runs gathered, each answer a second away: the 0.5 s deadline falls in both waits."""
    return await asyncio.gather(*(afetch_once(url) for url in urls))


@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
def one_worker_in_turn(urls: list[str]) -> Any:
    """Three mapped runs on one worker, each answer 0.2 s away: they wait in turn."""
    return fetch_once.map(urls).result()


@flow
def reads_a_state_once(url: str) -> Any:
    """A submitted run's state read once, never waited on: Prefect cancels its retry at the flow's exit."""
    future = fetch_after_a_second.submit(url)
    return future.state.name in {"Pending", "Running", "AwaitingRetry", "Retrying", "Completed", "Failed"}


@task
def collect_results(urls: list[str]) -> Any:
    return [future.result() for future in [fetch_after_a_second.submit(url) for url in urls]]


@flow(timeout_seconds=0.5)
def nested_results_past_the_deadline(urls: list[str]) -> Any:
    """A task submitting two runs that retry a second later and reading their results: past the 0.5 s deadline."""
    return collect_results(urls)


@flow(timeout_seconds=0.5)
def mapped_async_retries_past_the_deadline(urls: list[str]) -> Any:
    """Async task runs mapped, each failing once and retrying a second later: past the 0.5 s deadline."""
    return afetch_after_a_second.map(urls).result()
