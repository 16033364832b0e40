"""Flows on clients other than httpx, for the wire transport's tests (``tests.wire_flows:...``)."""

from __future__ import annotations

import os

import httpx
import requests
from prefect import flow, task

from tests.wire_clients import CLIENTS


@task(retries=1)
def get_with(client: str, url: str) -> int:
    status, body = CLIENTS[client](url)
    if status >= 500:
        raise RuntimeError(f"{status} from {url}")
    return len(body)


@flow
def one_get(client: str, url: str) -> int:
    """One GET through the named client (``tests.wire_clients.CLIENTS``), one retry."""
    return get_with(client, url)


@task
def careless_get(url: str) -> str:
    try:
        return str(requests.get(url, timeout=2).status_code)
    except Exception as exc:
        return f"caught {type(exc).__name__}"


@flow
def careless(url: str) -> str:
    """Swallows whatever the request does: the harness must still fail an undeclared request."""
    return careless_get(url)


@task
def proxy_seen() -> str | None:
    return os.environ.get("HTTPS_PROXY")


@flow
def proxy_flow() -> str | None:
    return proxy_seen()


@task
def connect_to(address: str, port: int) -> str:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        s.connect((address, port))
    return "connected"


@flow
def raw_connect(address: str, port: int) -> str:
    """A raw connection by address: no name resolution for the guard to refuse first."""
    return connect_to(address, port)


# Clients made when this module is imported, outside any run: their SSL contexts were built before a run
# trusted the session's CA (tests/test_wire.py imports this module at collection).
SHARED = httpx.Client()
SHARED_ASYNC = httpx.AsyncClient()


@task(retries=1)
def shared_get(url: str) -> int:
    response = SHARED.get(url)
    response.raise_for_status()
    return len(response.content)


@flow
def shared_client(url: str) -> int:
    """One GET through a module-level ``httpx.Client``, one retry."""
    return shared_get(url)


@task(retries=1)
async def shared_async_get(url: str) -> int:
    response = await SHARED_ASYNC.get(url)
    response.raise_for_status()
    return len(response.content)


@flow
async def shared_async_client(url: str) -> int:
    """One GET through a module-level ``httpx.AsyncClient``, one retry."""
    return await shared_async_get(url)
