"""Prefect flows written as Prefect users write them, calling HTTP APIs with httpx.

Each flow is run twice by the fidelity check: through the harness and through a
plain ``prefect_test_harness()`` reference. Real sleeps and retry delays are kept
tiny so that the reference, which waits for real, stays fast.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS
from prefect.concurrency.asyncio import concurrency as async_concurrency
from prefect.concurrency.sync import concurrency
from prefect.exceptions import FailedRun
from prefect.filesystems import LocalFileSystem
from prefect.futures import as_completed, wait
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff, task_input_hash
from prefect.transactions import transaction
from prefect.utilities.annotations import allow_failure, quote, unmapped
from prefect.variables import Variable
from pydantic import BaseModel

from tests.fidelity.hook_log import logged

API = "https://api.example.test"
HOOKS = "https://hooks.example.test"


def get_json(url: str, **params: Any) -> Any:
    """GET a JSON body, raising ``httpx.HTTPStatusError`` on a status >= 400."""
    response = httpx.get(url, params=params or None, timeout=5.0)
    response.raise_for_status()
    return response.json()


async def aget_json(url: str) -> Any:
    """``get_json`` with an ``httpx.AsyncClient``."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(url)
    response.raise_for_status()
    return response.json()


# -- plain tasks ------------------------------------------------------------------


@task
def fetch_once(url: str) -> Any:
    return get_json(url)


@task(retries=2, retry_delay_seconds=0.05)
def fetch_item(item_id: int) -> int:
    return int(get_json(f"{API}/items/{item_id}")["value"])


@task(retries=2, retry_delay_seconds=0.05)
def fetch_retrying(url: str) -> Any:
    return get_json(url)


@flow
def status_raises(url: str) -> Any:
    """raise_for_status in a task without retries: one call, the flow fails."""
    return fetch_once(url)


@flow
def transport_fault_retried(url: str) -> Any:
    """A transport fault (timeout, refused, reset) retried by the task's retries."""
    return fetch_retrying(url)


# -- caching ------------------------------------------------------------------------


@task(cache_key_fn=task_input_hash)
def quote_hashed(symbol: str) -> float:
    return float(get_json(f"{API}/quotes/{symbol}")["price"])


@task(cache_policy=INPUTS)
def quote_inputs(symbol: str) -> float:
    return float(get_json(f"{API}/quotes/{symbol}")["price"])


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def quote_expiring(symbol: str) -> float:
    return float(get_json(f"{API}/quotes/{symbol}")["price"])


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(seconds=0.2))
def quote_short_lived(symbol: str) -> float:
    return float(get_json(f"{API}/quotes/{symbol}")["price"])


@flow
def cached_by_input_hash(symbols: list[str]) -> list[float]:
    """cache_key_fn=task_input_hash: a repeated input is served from the cache within the run."""
    return [quote_hashed(s) for s in symbols]


@flow
def cached_by_inputs_policy(symbols: list[str]) -> list[float]:
    """cache_policy=INPUTS: a repeated input is served from the cache within the run."""
    return [quote_inputs(s) for s in symbols]


@flow
def cached_with_expiration(symbol: str) -> list[float]:
    """cache_expiration of an hour: the second call is a cache hit."""
    return [quote_expiring(symbol), quote_expiring(symbol)]


@flow
def cache_expires_between_calls(symbol: str) -> list[float]:
    """cache_expiration of 0.2 s and 0.4 s of real work between the calls: the cache has expired."""
    first = quote_short_lived(symbol)
    time.sleep(0.4)
    return [first, quote_short_lived(symbol)]


@flow
def cache_refreshed(symbol: str) -> list[float]:
    """refresh_cache=True at the call site: the second call ignores the cached value."""
    return [quote_inputs(symbol), quote_inputs.with_options(refresh_cache=True)(symbol)]


@task(persist_result=True)
def fetch_persisted(url: str) -> Any:
    return get_json(url)


@flow(persist_result=True)
def persisted_results(url: str) -> dict[str, Any]:
    """persist_result=True on the task and the flow: results written to result storage."""
    body = fetch_persisted(url)
    return {"count": len(body["items"]), "first": body["items"][0]}


# -- futures ------------------------------------------------------------------------


@flow
def submit_then_result(ids: list[int]) -> list[int]:
    """.submit every task, then .result() each future in order."""
    futures = [fetch_item.submit(i) for i in ids]
    return [f.result() for f in futures]


@flow
def polls_future_state(ids: list[int]) -> list[str]:
    """Submit, then poll ``future.state`` (read from the API) until every run is final, then read the results."""
    futures = [fetch_item.submit(i) for i in ids]
    deadline = time.monotonic() + 10.0
    while not all(f.state.is_final() for f in futures) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [f"{f.state.name}:{f.result(raise_on_failure=False)}" for f in futures]


@task(retries=3, retry_delay_seconds=0.05)
def notify(url: str) -> int:
    response = httpx.post(url, json={"event": "refreshed"}, timeout=5.0)
    response.raise_for_status()
    return response.status_code


@flow
def submit_without_waiting(url: str) -> str:
    """Fire and forget: the flow returns without waiting on its future."""
    notify.submit(url)
    return "queued"


@flow
def map_one_failing(ids: list[int]) -> list[int]:
    """.map over ids, wait for all, then .result(): the failing element fails the flow."""
    futures = fetch_item.map(ids)
    wait(futures)
    return [f.result() for f in futures]


@flow
def wait_then_states(ids: list[int]) -> list[str]:
    """prefect.futures.wait(), then the final state names; the flow itself does not fail."""
    futures = fetch_item.map(ids)
    done, not_done = wait(futures)
    return sorted(f.state.name for f in done) + [f"not done: {len(not_done)}"]


@flow
def sum_as_completed(ids: list[int]) -> int:
    """prefect.futures.as_completed(): results summed in completion order."""
    return sum(f.result() for f in as_completed(fetch_item.map(ids)))


@task
def fetch_with_headers(item_id: int, headers: dict[str, str]) -> int:
    response = httpx.get(f"{API}/items/{item_id}", headers=headers, timeout=5.0)
    response.raise_for_status()
    return int(response.json()["value"])


@flow
def map_then_result(ids: list[int]) -> list[int]:
    """.map(...).result(): raises on the first failing element, as soon as it fails."""
    return fetch_item.map(ids).result()


@flow
def map_with_unmapped(ids: list[int], token: str) -> list[int]:
    """.map with unmapped() for the argument shared by every element."""
    return fetch_with_headers.map(ids, unmapped({"authorization": f"Bearer {token}"})).result()


@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
def map_on_one_worker(ids: list[int]) -> list[int]:
    """ThreadPoolTaskRunner(max_workers=1): mapped runs one at a time, one of them retried."""
    futures = fetch_item.map(ids)
    wait(futures)
    return [f.result() for f in futures]


@task
def login(url: str) -> str:
    return str(get_json(url)["token"])


@task
def fetch_after_login(url: str) -> Any:
    return get_json(url)


@flow
def upstream_failure_blocks_downstream(login_url: str, data_url: str) -> Any:
    """wait_for=[an upstream that fails]: the downstream never runs and the flow fails."""
    token = login.submit(login_url)
    data = fetch_after_login.submit(data_url, wait_for=[token])
    return data.result()


@task
def cleanup(url: str) -> int:
    return httpx.delete(url, timeout=5.0).status_code


@flow
def allow_failure_runs_cleanup(data_url: str, cleanup_url: str) -> int:
    """allow_failure(): the cleanup runs although its upstream failed; the flow returns its result."""
    data = fetch_once.submit(data_url)
    done = cleanup.submit(cleanup_url, wait_for=[allow_failure(data)])
    return done.result()


# -- subflows -----------------------------------------------------------------------


@flow(retries=2, retry_delay_seconds=0.05)
def refresh_inventory(url: str) -> Any:
    return fetch_once(url)


@flow
def subflow_with_retries(url: str) -> dict[str, Any]:
    """A subflow with retries of its own; its task has none, so the subflow's retry re-runs it."""
    return {"inventory": refresh_inventory(url)}


@flow
def inner_fetch(url: str) -> Any:
    return fetch_once(url)


@flow
def middle_fetch(url: str) -> Any:
    return {"inner": inner_fetch(url)}


@flow
def nested_subflow_fails(url: str) -> Any:
    """A failure two subflows deep fails every flow above it."""
    return {"middle": middle_fetch(url)}


@task(retries=1, retry_delay_seconds=0.05)
def fetch_nested(url: str) -> Any:
    return {"outer": fetch_once(url)}


@flow
def task_calls_task(url: str) -> Any:
    """A task calling another task (nested task runs, allowed in Prefect 3)."""
    return fetch_nested(url)


@flow(retries=1, retry_delay_seconds=0.05)
def child_without_retries(url: str) -> Any:
    return fetch_once(url)


@flow
def subflow_with_options_retries(url: str) -> Any:
    """flow.with_options(retries=1) at the call site of a subflow."""
    return {"child": child_without_retries.with_options(retries=2, retry_delay_seconds=0.01)(url)}


# -- async --------------------------------------------------------------------------


@task(retries=1, retry_delay_seconds=0.05)
async def fetch_item_async(item_id: int) -> int:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"{API}/items/{item_id}")
    response.raise_for_status()
    return int(response.json()["value"])


@flow
async def async_gather(ids: list[int]) -> list[int]:
    """An async flow gathering async tasks, one of them retried."""
    return list(await asyncio.gather(*(fetch_item_async(i) for i in ids)))


@flow
async def sync_task_in_async_flow(ids: list[int]) -> list[int]:
    """A sync task called from an async flow."""
    return [fetch_item(i) for i in ids]


@flow(retries=1, retry_delay_seconds=0.05)
async def async_flow_retries(ids: list[int]) -> list[int]:
    """An async flow with retries=1 whose task has none: the flow's retry runs the tasks again."""
    return list(await asyncio.gather(*(fetch_item_once_async(i) for i in ids)))


@task
async def fetch_item_once_async(item_id: int) -> int:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"{API}/items/{item_id}")
    response.raise_for_status()
    return int(response.json()["value"])


# -- timeouts -----------------------------------------------------------------------


@task(timeout_seconds=0.3, retries=1, retry_delay_seconds=0.05)
def slow_job(url: str) -> Any:
    body = get_json(url)
    time.sleep(body.get("work_s", 0))  # real work, longer than the timeout on the first answer
    return body["value"]


@task(timeout_seconds=0.3, retries=1, retry_delay_seconds=0.05)
async def slow_job_async(url: str) -> Any:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(url)
    response.raise_for_status()
    body = response.json()
    await asyncio.sleep(body.get("work_s", 0))
    return body["value"]


@flow
def task_timeout_sync(url: str) -> Any:
    """A sync task with timeout_seconds=0.3 doing 0.8 s of work."""
    return slow_job(url)


@flow
async def task_timeout_async(url: str) -> Any:
    """An async task with timeout_seconds=0.3 awaiting 0.8 s."""
    return await slow_job_async(url)


@flow
def submitted_task_timeout(url: str) -> Any:
    """A sync task with timeout_seconds submitted to the thread pool: enforced off the main thread."""
    return slow_job.submit(url).result()


@flow(timeout_seconds=1.0)
def flow_timeout_in_body(url: str) -> Any:
    """Flow timeout_seconds=1: the task completes, then the flow's own work outlasts it."""
    body = fetch_once(url)
    time.sleep(2.0)
    return body


@task
def fetch_then_work(url: str) -> Any:
    body = get_json(url)
    time.sleep(2.0)
    return body


@flow(timeout_seconds=1.0)
def flow_timeout_in_task(url: str) -> Any:
    """Flow timeout_seconds=1 expiring while a task is working."""
    return fetch_then_work(url)


@task(retries=3, retry_delay_seconds=1.0)
def fetch_patiently(url: str) -> Any:
    return get_json(url)


@flow(timeout_seconds=0.5)
def flow_timeout_during_retry_delays(url: str) -> Any:
    """Flow timeout_seconds=0.5 against a task waiting 1 s between attempts: it expires in the first wait."""
    return fetch_patiently(url)


@task(retries=3, retry_delay_seconds=1.0)
async def fetch_patiently_async(url: str) -> Any:
    return await aget_json(url)


@flow(timeout_seconds=0.5)
async def async_flow_timeout_during_retry_delays(url: str) -> Any:
    """The async variant: the flow's timeout expires while its async task waits to retry."""
    return await fetch_patiently_async(url)


# -- retry options ------------------------------------------------------------------


def retry_on_server_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Retry 5xx and transport errors only, as users write retry_condition_fn."""
    try:
        state.result()
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code >= 500
    except httpx.TransportError:
        return True
    return False


@task(retries=3, retry_delay_seconds=0.05, retry_condition_fn=retry_on_server_errors)
def fetch_conditionally(url: str) -> Any:
    return get_json(url)


@flow
def retry_condition(url: str) -> Any:
    """retry_condition_fn retrying only 5xx and transport errors."""
    return fetch_conditionally(url)


@task(retries=3, retry_delay_seconds=[0.01, 0.02])
def fetch_short_delay_list(url: str) -> Any:
    return get_json(url)


@task(retries=1, retry_delay_seconds=[0.01, 0.02, 0.04])
def fetch_long_delay_list(url: str) -> Any:
    return get_json(url)


@flow
def delay_list_shorter_than_retries(url: str) -> Any:
    """retries=3 with two delays: the last delay is reused."""
    return fetch_short_delay_list(url)


@flow
def delay_list_longer_than_retries(url: str) -> Any:
    """retries=1 with three delays: the extra delays are never used."""
    return fetch_long_delay_list(url)


@task(retries=2, retry_delay_seconds=0.05, retry_jitter_factor=1.0)
def fetch_jittered(url: str) -> Any:
    return get_json(url)


@flow
def retry_with_jitter(url: str) -> Any:
    """retry_jitter_factor=1.0 on a 0.05 s delay."""
    return fetch_jittered(url)


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=0.01))
def fetch_with_backoff(url: str) -> Any:
    return get_json(url)


@flow
def retry_exponential_backoff(url: str) -> Any:
    """retry_delay_seconds=exponential_backoff(backoff_factor=...)."""
    return fetch_with_backoff(url)


@flow
def with_options_at_call_site(url: str) -> Any:
    """task.with_options(retries=...) at the call site, on a task declared without retries."""
    return fetch_once.with_options(retries=2, retry_delay_seconds=0.01)(url)


@flow(retries=1)
def flow_retries_rerun_tasks(config_url: str, data_url: str) -> dict[str, Any]:
    """Flow retries=1, tasks without retries: the flow's retry runs its tasks again."""
    config = fetch_once(config_url)
    data = fetch_once(data_url)
    return {"config": config, "data": data}


@flow(retries=1, retry_delay_seconds=0.05)
def flow_retries_with_persisted_task(config_url: str, data_url: str) -> dict[str, Any]:
    """Flow retries with a persisted upstream: the retry reuses its result instead of calling again."""
    config = fetch_persisted(config_url)
    data = fetch_once(data_url)
    return {"config": config, "data": data}


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(seconds=0.3))
def quote_brief(symbol: str) -> float:
    return float(get_json(f"{API}/quotes/{symbol}")["price"])


@task(retries=1, retry_delay_seconds=0.6)
def fetch_retrying_slowly(url: str) -> Any:
    return get_json(url)


@flow
def cache_expires_during_retry_delay(symbol: str, url: str) -> list[Any]:
    """A cached quote, a task whose one retry waits 0.6 s, the quote again: its 0.3 s cache has expired."""
    first = quote_brief(symbol)
    report = fetch_retrying_slowly(url)
    return [first, quote_brief(symbol), report]


@flow(retries=1, retry_delay_seconds=2)
def cache_expires_during_flow_retry_delay(symbol: str, url: str) -> list[Any]:
    """A cached quote, then a failing task: the flow's retry comes 2 s later, past the quote's 0.3 s cache.

    The server rounds a flow's retry delay to whole seconds (a delay under about half a second is not
    waited at all), so this one is long enough to be waited for real.
    """
    return [quote_brief(symbol), fetch_once(url)]


# -- control flow in the flow -------------------------------------------------------


@flow
def return_state_fallback(primary_url: str, backup_url: str) -> Any:
    """return_state=True inside the flow: a failed primary falls back to the backup."""
    state = fetch_once(primary_url, return_state=True)
    if state.is_failed():
        return {"source": "backup", "body": fetch_once(backup_url)}
    return {"source": "primary", "body": state.result()}


@flow
def except_and_fallback(primary_url: str, backup_url: str) -> Any:
    """try/except around a task call: the task fails, the flow carries on."""
    try:
        return {"source": "primary", "body": fetch_once(primary_url)}
    except httpx.HTTPStatusError:
        return {"source": "backup", "body": fetch_once(backup_url)}


@flow
def best_effort_loop(ids: list[int]) -> list[int | None]:
    """A loop that records None for the elements whose task failed after its retries."""
    out: list[int | None] = []
    for i in ids:
        state = fetch_item(i, return_state=True)
        out.append(state.result() if state.is_completed() else None)
    return out


@flow
def returns_failed_state(url: str) -> Any:
    """A flow that returns a Failed state when the upstream answers with no rows."""
    body = fetch_once(url)
    if not body["items"]:
        return Failed(message="upstream returned no rows")
    return body


@flow(log_prints=True)
def prints_logged(url: str) -> int:
    """log_prints=True: print() goes to Prefect's logger."""
    body = fetch_once(url)
    print(f"fetched {len(body['items'])} items")
    return len(body["items"])


# -- hooks --------------------------------------------------------------------------


@logged
def alert_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    httpx.post(f"{HOOKS}/alert", json={"flow_run": flow_run.name, "state": state.name}, timeout=5.0)


@logged
def report_completion(flow: Any, flow_run: Any, state: Any) -> None:
    httpx.post(f"{HOOKS}/done", json={"flow_run": flow_run.name}, timeout=5.0)


@logged
def task_completion_hook(task: Any, task_run: Any, state: Any) -> None:
    httpx.post(f"{HOOKS}/task-done", json={"task_run": task_run.name}, timeout=5.0)


@task(on_completion=[task_completion_hook])
def fetch_with_completion_hook(url: str) -> Any:
    return get_json(url)


@flow
def task_on_completion_hook(url: str) -> Any:
    """A task on_completion hook calling a webhook."""
    return fetch_with_completion_hook(url)


@flow(on_failure=[alert_on_failure], on_completion=[report_completion])
def flow_hooks(url: str) -> Any:
    """on_failure / on_completion flow hooks that call a webhook."""
    return fetch_once(url)


@logged
def task_failure_hook(task: Any, task_run: Any, state: Any) -> None:
    httpx.post(f"{HOOKS}/task-failed", json={"task_run": task_run.name}, timeout=5.0)


@task(on_failure=[task_failure_hook], retries=1, retry_delay_seconds=0.01)
def fetch_with_task_hook(url: str) -> Any:
    return get_json(url)


@flow
def task_on_failure_hook(url: str) -> Any:
    """A task on_failure hook calling a webhook once, after the retries are spent."""
    return fetch_with_task_hook(url)


@logged
def noted(owner: Any, run: Any, state: Any) -> None:
    """A hook that does nothing but be logged (``hook_log``)."""


@task(retries=1, retry_delay_seconds=0.01, on_running=[noted], on_failure=[noted], on_completion=[noted])
def fetch_with_every_hook(url: str) -> Any:
    return get_json(url)


@flow(on_running=[noted], on_failure=[noted], on_completion=[noted, noted])
def hooks_of_every_kind(url: str) -> Any:
    """Flow and task hooks of every kind a run can reach; the flow's on_completion twice (each call counts)."""
    return fetch_with_every_hook(url)


@task(retries=1, retry_delay_seconds=0.01, on_running=[noted], on_failure=[noted], on_completion=[noted])
async def afetch_with_every_hook(url: str) -> Any:
    return await aget_json(url)


@flow(on_running=[noted], on_failure=[noted], on_completion=[noted])
async def async_hooks_of_every_kind(url: str) -> Any:
    """The same hooks on an async flow and task: the async engines call them."""
    return await afetch_with_every_hook(url)


# -- a shared client ----------------------------------------------------------------


@task(retries=2, retry_delay_seconds=0.01)
def search(client: httpx.Client, query: str) -> int:
    response = client.get("/v1/search", params={"q": query, "page": 1})
    response.raise_for_status()
    return int(response.json()["total"])


@flow
def shared_client_base_url(queries: list[str]) -> dict[str, int]:
    """One httpx.Client(base_url=...) shared by every task run, query strings matched as a subset."""
    with httpx.Client(base_url=API, timeout=5.0, headers={"user-agent": "fidelity"}) as client:
        return {q: search(client, q) for q in queries}


@task(retries=1, retry_delay_seconds=0.5)
def fetch_item_once_more(url: str) -> Any:
    return get_json(url)


@flow(timeout_seconds=1.4)
def mapped_retries_within_the_flow_timeout(urls: list[str]) -> Any:
    """Three mapped tasks each wait 0.5 s once, side by side: about 0.5 s in all, within 1.4 s (one after
    another, 1.5 s would not be; the margin is for plain Prefect's own overhead on a loaded machine)."""
    return fetch_item_once_more.map(urls).result()


# -- concurrent waits against a flow's deadline --------------------------------------------


@task(retries=1, retry_delay_seconds=1.0)
async def fetch_async_once_more(url: str) -> Any:
    return await aget_json(url)


@flow(timeout_seconds=0.5)
async def gathered_waits_past_the_flow_timeout(urls: list[str]) -> Any:
    """Two async tasks gathered, each failing once and waiting 1 s side by side: the 0.5 s deadline falls in it."""
    return await asyncio.gather(*(fetch_async_once_more(url) for url in urls))


@task(retries=1, retry_delay_seconds=1.0)
def fetch_once_more_after_a_second(url: str) -> Any:
    return get_json(url)


@flow(timeout_seconds=0.5)
def mapped_waits_past_the_flow_timeout(urls: list[str]) -> Any:
    """Two mapped tasks, each failing once and waiting 1 s side by side: the 0.5 s deadline falls in the wait."""
    return fetch_once_more_after_a_second.map(urls).result()


# -- async subflows -----------------------------------------------------------------


@task(retries=2, retry_delay_seconds=0.02)
async def fetch_region_total(region: str) -> int:
    body = await aget_json(f"{API}/regions/{region}/sales")
    return int(body["total"])


@flow
async def region_report(region: str) -> dict[str, Any]:
    return {"region": region, "total": await fetch_region_total(region)}


@flow
async def gathered_async_subflows(regions: list[str]) -> list[dict[str, Any]]:
    """Async subflows run side by side with asyncio.gather, each calling a task; one task retries."""
    return list(await asyncio.gather(*(region_report(r) for r in regions)))


# -- transactions -------------------------------------------------------------------

TRANSACTION_LOG: list[str] = []


@task
def stage_records(url: str) -> int:
    return len(get_json(url)["items"])


@stage_records.on_commit
def _staged_records_committed(txn: Any) -> None:
    TRANSACTION_LOG.append("stage_records: commit")


@stage_records.on_rollback
def _staged_records_rolled_back(txn: Any) -> None:
    TRANSACTION_LOG.append("stage_records: rollback")


@task(retries=1, retry_delay_seconds=0.02)
def publish_records(url: str, count: int) -> int:
    response = httpx.post(url, json={"count": count}, timeout=5.0)
    response.raise_for_status()
    return int(response.json()["published"])


@publish_records.on_commit
def _published_committed(txn: Any) -> None:
    TRANSACTION_LOG.append("publish_records: commit")


@publish_records.on_rollback
def _published_rolled_back(txn: Any) -> None:
    TRANSACTION_LOG.append("publish_records: rollback")


@flow
def staged_publish_in_transaction(source_url: str, publish_url: str) -> dict[str, Any]:
    """Stage then publish inside ``with transaction()``: on_commit / on_rollback hooks of each task.

    A failed attempt of the publish rolls the whole transaction back (its staged sibling too), even if the
    retry then succeeds; the flow catches a failure that escapes the block and returns what the hooks did.
    """
    TRANSACTION_LOG.clear()
    published: int | None = None
    try:
        with transaction():
            count = stage_records(source_url)
            published = publish_records(publish_url, count)
    except httpx.HTTPStatusError as exc:
        TRANSACTION_LOG.append(f"flow: caught {exc.response.status_code}")
    return {"published": published, "hooks": list(TRANSACTION_LOG)}


# -- explicit result storage ----------------------------------------------------------


@task(retries=1, retry_delay_seconds=0.02)
def fetch_rows_to_store(url: str) -> dict[str, Any]:
    return get_json(url)


@flow
def results_in_local_file_system(url: str) -> dict[str, Any]:
    """A LocalFileSystem block in a temporary folder as the task's result_storage, with persist_result=True."""
    folder = tempfile.mkdtemp(prefix="fidelity-block-")
    try:
        storage = LocalFileSystem(basepath=folder)
        storage.save("fidelity-results", overwrite=True)  # result storage must be a saved block
        body = fetch_rows_to_store.with_options(result_storage=storage, persist_result=True)(url)
        written = [name for name in os.listdir(folder) if not name.startswith(".")]
        return {"rows": len(body["items"]), "files_written": len(written)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- global concurrency limits --------------------------------------------------------


@flow
def global_concurrency_sync(ids: list[int]) -> list[int]:
    """``with concurrency("example-api")`` (prefect.concurrency.sync) around the flow's calls to the API.

    The limit does not exist: Prefect logs a warning and goes on without a slot.
    """
    with concurrency("example-api", occupy=1):
        return fetch_item.map(ids).result()


@flow
async def global_concurrency_async(ids: list[int]) -> list[int]:
    """``async with concurrency(...)`` (prefect.concurrency.asyncio) around gathered async tasks."""
    async with async_concurrency("example-api", occupy=1):
        return list(await asyncio.gather(*(fetch_item_async(i) for i in ids)))


@flow
def strict_concurrency_missing_limit(url: str) -> Any:
    """``concurrency(..., strict=True)`` on a limit that does not exist: the flow fails before any call."""
    with concurrency("example-api-strict", occupy=1, strict=True):
        return fetch_once(url)


# -- run loggers ----------------------------------------------------------------------


@task(retries=1, retry_delay_seconds=0.02)
def fetch_logged(url: str) -> int:
    logger = get_run_logger()
    logger.info("GET %s", url)
    rows = get_json(url)["items"]
    logger.info("received %d rows", len(rows))
    return len(rows)


@flow
def run_logger_in_flow_and_tasks(urls: list[str]) -> dict[str, Any]:
    """get_run_logger() in the flow and in its tasks."""
    logger = get_run_logger()
    counts = {url.rsplit("/", 1)[-1]: fetch_logged(url) for url in urls}
    logger.warning("fetched %d rows in all", sum(counts.values()))
    return {"counts": counts, "logger": logger.name}


# -- prefect.runtime ------------------------------------------------------------------


@task(retries=2, retry_delay_seconds=0.01)
def fetch_dataset_attempt(dataset: str) -> dict[str, Any]:
    body = get_json(f"{API}/datasets/{dataset}")
    return {
        "rows": body["rows"],
        "attempt": runtime.task_run.run_count,
        "task": runtime.task_run.task_name,
        "task_parameters": dict(runtime.task_run.parameters),
        "flow_run": runtime.flow_run.name,
    }


@flow(flow_run_name="nightly-{dataset}")
def runtime_names_and_attempts(dataset: str) -> dict[str, Any]:
    """prefect.runtime read inside a retried task (run_count, names) and in the flow (parameters)."""
    fetched = fetch_dataset_attempt(dataset)
    return {**fetched, "flow_parameters": dict(runtime.flow_run.parameters), "flow_name": runtime.flow_run.flow_name}


# -- returned state objects -----------------------------------------------------------


@flow
def returns_completed_with_message(url: str) -> Any:
    """A flow returning ``Completed(message=...)`` when there is nothing to do."""
    rows = fetch_once(url)["items"]
    if not rows:
        return Completed(message="nothing to sync today")
    return {"synced": len(rows)}


@task(retries=1, retry_delay_seconds=0.02)
def validate_record(url: str) -> Any:
    record = get_json(url)
    missing = [field for field in ("id", "email") if field not in record]
    if missing:
        return Failed(message=f"record is missing {', '.join(missing)}")
    return record


@flow
def task_returns_failed_state(url: str) -> dict[str, Any]:
    """A task returning ``Failed(...)`` (retried as a raised error is); the flow reads it with return_state."""
    state = validate_record(url, return_state=True)
    if state.is_failed():
        return {"valid": False, "state": state.name, "reason": state.message}
    return {"valid": True, "record": state.result()}


# -- prefect.exceptions raised by user code -----------------------------------------------


@task(retries=2, retry_delay_seconds=0.02)
def poll_export(url: str) -> int:
    body = get_json(url)
    if body["status"] == "failed":
        raise FailedRun(f"export {body['id']} failed upstream")
    return int(body["rows"])


@flow
def raises_failed_run(url: str) -> int:
    """A task raising prefect.exceptions.FailedRun on an error payload served with 200, retried."""
    return poll_export(url)


# -- state hooks recorded -------------------------------------------------------------

HOOK_EVENTS: list[str] = []


@logged
def _record_task_completed(task: Any, task_run: Any, state: Any) -> None:
    HOOK_EVENTS.append(f"task {task.name}: {state.name}")


@logged
def _record_task_failed(task: Any, task_run: Any, state: Any) -> None:
    HOOK_EVENTS.append(f"task {task.name}: {state.name}")


@logged
def _record_flow_state(flow: Any, flow_run: Any, state: Any) -> None:
    HOOK_EVENTS.append(f"flow {flow.name} {flow_run.parameters.get('partner')}: {state.name}")


@task(retries=1, retry_delay_seconds=0.01, on_completion=[_record_task_completed], on_failure=[_record_task_failed])
def push_partner_feed(partner: str) -> int:
    response = httpx.post(f"{API}/partners/{partner}/feed", json={"partner": partner}, timeout=5.0)
    response.raise_for_status()
    return int(response.json()["accepted"])


@flow(on_completion=[_record_flow_state], on_failure=[_record_flow_state], on_crashed=[_record_flow_state])
def sync_partner(partner: str) -> int:
    return push_partner_feed(partner)


@flow
def hooks_recorded_per_partner(partners: list[str]) -> dict[str, Any]:
    """Flow and task on_completion / on_failure / on_crashed hooks append to a module-level list the flow returns."""
    HOOK_EVENTS.clear()
    states = {p: sync_partner(p, return_state=True).name for p in partners}
    return {"states": states, "events": list(HOOK_EVENTS)}


@flow(on_crashed=[_record_flow_state], on_failure=[_record_flow_state])
def maintenance_aware_sync(partner: str) -> Any:
    body = get_json(f"{API}/partners/{partner}/status")
    if body["maintenance"]:
        sys.exit(3)  # a script's way out: the subflow run crashes
    return push_partner_feed(partner)


@flow
def subflow_crash_runs_on_crashed(partners: list[str]) -> dict[str, Any]:
    """A subflow calling sys.exit() crashes: its on_crashed hook runs; the parent catches SystemExit."""
    HOOK_EVENTS.clear()
    out: dict[str, Any] = {}
    for partner in partners:
        try:
            out[partner] = maintenance_aware_sync(partner)
        except SystemExit as exc:
            out[partner] = f"exit {exc.code}"
    return {"partners": out, "events": list(HOOK_EVENTS)}


# -- caching with a cache key function ------------------------------------------------------


def symbol_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return f"quote-{parameters['symbol'].upper()}"


@task(cache_key_fn=symbol_cache_key)
def quote_by_symbol(symbol: str) -> float:
    return float(get_json(f"{API}/quotes/{symbol}")["price"])


@flow
def cache_key_fn_then_refresh(symbol: str) -> list[float]:
    """cache_key_fn on the upper-cased symbol: a lower-case call hits; refresh_cache=True calls and rewrites."""
    first = quote_by_symbol(symbol)
    same_key = quote_by_symbol(symbol.lower())
    refreshed = quote_by_symbol.with_options(refresh_cache=True)(symbol)
    after = quote_by_symbol(symbol)
    return [first, same_key, refreshed, after]


# -- retry condition on a rate limit, exponential backoff in mapped runs ---------------------


async def retry_when_rate_limited(task: Any, task_run: Any, state: Any) -> bool:
    try:
        await state.result()  # in an async engine, State.result() is a coroutine
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code == 429
    return False


@task(retries=4, retry_delay_seconds=0.01, retry_condition_fn=retry_when_rate_limited)
async def fetch_rate_limited(url: str) -> Any:
    return await aget_json(url)


@flow
async def async_retry_condition_on_429(urls: list[str]) -> list[Any]:
    """An async task whose retry_condition_fn retries only 429 Too Many Requests."""
    states = await asyncio.gather(*(fetch_rate_limited(u, return_state=True) for u in urls))
    return [await s.result() if s.is_completed() else s.name for s in states]


@task(retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=0.005))
def fetch_item_with_backoff(item_id: int) -> int:
    return int(get_json(f"{API}/items/{item_id}")["value"])


@flow
def mapped_exponential_backoff(ids: list[int]) -> dict[str, Any]:
    """exponential_backoff(0.005) on mapped runs; one element fails for good, read with return_state."""
    futures = fetch_item_with_backoff.map(ids)
    wait(futures)
    return {str(i): f.state.name for i, f in zip(ids, futures, strict=True)}


# -- .map with unmapped, wait_for, nested tasks, generators, annotations ---------------------


@task(retries=1, retry_delay_seconds=0.01)
def fetch_user_fields(user_id: int, fields: list[str]) -> dict[str, Any]:
    body = get_json(f"{API}/users/{user_id}", fields=",".join(fields))
    return {field: body[field] for field in fields}


@flow
def map_over_ids_with_unmapped_list(user_ids: list[int], fields: list[str]) -> list[dict[str, Any]]:
    """.map over ids with unmapped(list): the list goes whole to every element instead of being mapped."""
    return fetch_user_fields.map(user_ids, unmapped(fields)).result()


@task
def create_export(url: str) -> str:
    response = httpx.post(url, json={"format": "csv"}, timeout=5.0)
    response.raise_for_status()
    return str(response.json()["export_id"])


@task(retries=2, retry_delay_seconds=0.02)
def download_export(url: str) -> int:
    return len(get_json(url)["items"])


@flow
def direct_call_waits_for_submitted(create_url: str, download_url: str) -> dict[str, Any]:
    """A direct call with wait_for=[a submitted future]: it runs once the export exists, and retries."""
    created = create_export.submit(create_url)
    rows = download_export(download_url, wait_for=[created])
    return {"export": created.result(), "rows": rows}


@task
def fetch_all_items(ids: list[int]) -> list[int]:
    return fetch_item.map(ids).result()


@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
def task_maps_a_task(ids: list[int]) -> list[int]:
    """A task mapping another task from inside its own run, on one worker: the nested runs share the outer
    task's transaction, so a failed attempt rolls back the sibling finished before it (RolledBack)."""
    return fetch_all_items(ids)


@task
def paginate_orders(url: str) -> Iterator[dict[str, Any]]:
    page = 1
    while True:
        body = get_json(url, page=page)
        yield from body["items"]
        if not body.get("next"):
            return
        page += 1


@flow
def generator_task_pages(url: str) -> list[int]:
    """A generator task yielding the rows of every page; the flow consumes it."""
    return [order["id"] for order in paginate_orders(url)]


@task
def merge_optional(primary: Any, optional: Any) -> dict[str, Any]:
    if isinstance(optional, BaseException):
        return {"primary": primary, "optional": None, "skipped": type(optional).__name__}
    return {"primary": primary, "optional": optional, "skipped": None}


@flow
def allow_failure_as_argument(primary_url: str, optional_url: str) -> dict[str, Any]:
    """allow_failure(future) passed as an argument: the task receives the upstream's exception."""
    primary = fetch_once.submit(primary_url)
    optional = fetch_once.submit(optional_url)
    return merge_optional(primary, allow_failure(optional))


@task
def summarize_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rows": len(rows), "total": sum(r["amount"] for r in rows)}


@flow
def quoted_argument(url: str) -> dict[str, Any]:
    """quote() around a large argument: Prefect passes it through without inspecting it for futures."""
    rows = fetch_retrying(url)["items"]
    return summarize_rows(quote(rows))


# -- gathered with return_exceptions, pydantic parameters, variables, artifacts --------------


@flow
async def gather_return_exceptions(ids: list[int]) -> list[Any]:
    """asyncio.gather(..., return_exceptions=True) over async tasks: a failed task is an exception in the list."""
    results = await asyncio.gather(*(fetch_item_async(i) for i in ids), return_exceptions=True)
    return [type(r).__name__ if isinstance(r, BaseException) else r for r in results]


class SyncConfig(BaseModel):
    base_url: str
    resource: str = "orders"
    page_size: int = 50


@task(retries=1, retry_delay_seconds=0.01)
def fetch_page(config: SyncConfig, page: int) -> list[dict[str, Any]]:
    url = f"{config.base_url}/{config.resource}"
    return list(get_json(url, page=page, per_page=config.page_size)["items"])


@flow
def pydantic_model_parameter(config: SyncConfig, pages: int) -> dict[str, Any]:
    """A flow parameter typed with a pydantic model: Prefect validates the dict it is given into the model."""
    rows = [row for page in range(1, pages + 1) for row in fetch_page(config, page)]
    return {"resource": config.resource, "page_size": config.page_size, "ids": [r["id"] for r in rows]}


@task(retries=1, retry_delay_seconds=0.01)
def fetch_with_page_size(url: str, page_size: int) -> int:
    return len(get_json(url, limit=page_size)["items"])


@flow
def variable_with_default(url: str) -> dict[str, Any]:
    """Variable.get(name, default=...) for a setting nobody has set: the default is used."""
    page_size = Variable.get("fidelity_partner_page_size", default=25)
    return {"page_size": page_size, "rows": fetch_with_page_size(url, page_size)}


@task(retries=1, retry_delay_seconds=0.01)
def report_with_artifact(url: str) -> int:
    rows = get_json(url)["items"]
    create_markdown_artifact(
        markdown="| id |\n|---|\n" + "".join(f"| {r['id']} |\n" for r in rows),
        key="fidelity-daily-report",
        description="rows fetched today",
    )
    return len(rows)


@flow
def markdown_artifact_in_task(url: str) -> int:
    """create_markdown_artifact() in a retried task, after its fetch succeeds."""
    return report_with_artifact(url)
