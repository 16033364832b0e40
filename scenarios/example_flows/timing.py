"""Flows whose fault tolerance spends time: retry delays, backoff, flow retries, timeouts."""

from __future__ import annotations

import httpx
from prefect import flow, task
from prefect.tasks import exponential_backoff

URL = "https://reports.example.test/api/report"


@task(retries=3, retry_delay_seconds=600)
def fetch_report_patiently() -> dict:
    response = httpx.get(URL)
    response.raise_for_status()
    return response.json()


@flow
def patient_report() -> dict:
    """Three retries ten minutes apart: half an hour of waiting at worst."""
    return fetch_report_patiently()


@task(retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5)
def fetch_report_backoff() -> dict:
    response = httpx.get(URL)
    response.raise_for_status()
    return response.json()


@flow
def backoff_report() -> dict:
    """Exponential backoff (10, 20, 40, 80 s) with jitter, as Prefect's docs suggest."""
    return fetch_report_backoff()


@task(retries=2, retry_delay_seconds=[1, 5])
def fetch_report_listed() -> dict:
    response = httpx.get(URL)
    response.raise_for_status()
    return response.json()


@flow
def listed_delays_report() -> dict:
    return fetch_report_listed()


@task
def fetch_report_once() -> dict:
    response = httpx.get(URL)
    response.raise_for_status()
    return response.json()


@flow(retries=2, retry_delay_seconds=300)
def flow_retry_report() -> dict:
    """No task retries: the whole flow is retried by the server, five minutes apart."""
    return fetch_report_once()


@task(retries=1, timeout_seconds=2)
def fetch_report_in_time() -> dict:
    response = httpx.get(URL, timeout=30.0)
    response.raise_for_status()
    return response.json()


@flow
def deadline_report() -> dict:
    """A two-second task timeout on a client that would wait thirty."""
    return fetch_report_in_time()


@task(retries=1)
def fetch_report_client_timeout() -> dict:
    response = httpx.get(URL, timeout=1.5)
    response.raise_for_status()
    return response.json()


@flow
def client_timeout_report() -> dict:
    """The client's own read timeout (1.5 s) bounds a slow answer."""
    return fetch_report_client_timeout()
