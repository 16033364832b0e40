"""Flows that call a live API (a stand-in on loopback in the tests), for ``harness record``."""

from __future__ import annotations

import httpx
from prefect import flow, task


def _client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=5)


@task(retries=1)
def list_items(base_url: str, token: str, api_key: str) -> list[int]:
    with _client(base_url, token) as client:
        response = client.get("/v1/items", params={"page": 1, "api_key": api_key})
        response.raise_for_status()
        return [item["id"] for item in response.json()["items"]]


@task
def stock_of(base_url: str, token: str, item: int) -> int:
    with _client(base_url, token) as client:
        response = client.get(f"/v1/items/{item}")
        response.raise_for_status()
        return int(response.json()["stock"])


@flow
def inventory(base_url: str, token: str, api_key: str) -> int:
    """The stock of every item: one list call (retried once), then one call per item (never retried)."""
    return sum(stock_of(base_url, token, item) for item in list_items(base_url, token, api_key))


@task
def job_state(base_url: str, token: str) -> str:
    with _client(base_url, token) as client:
        return str(client.get("/v1/job").json()["state"])


@flow
def poll_job(base_url: str, token: str, polls: int = 3) -> list[str]:
    """Polls the same URL: each answer differs, so the recording serves them in order."""
    return [job_state(base_url, token) for _ in range(polls)]


@task
def count_catalog(base_url: str, token: str) -> int:
    with _client(base_url, token) as client:
        return len(client.get("/v1/catalog").json()["products"])


@flow
def catalog_size(base_url: str, token: str) -> int:
    """Counts a long list: a recording trimmed to --max-body answers with fewer products."""
    return count_catalog(base_url, token)


@task(retries=1)
async def async_stock(base_url: str, token: str, item: int) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=5) as client:
        response = await client.get(f"/v1/items/{item}")
        response.raise_for_status()
        return int(response.json()["stock"])


@flow
async def async_inventory(base_url: str, token: str, items: list[int]) -> int:
    """The same API through httpx.AsyncClient, on the event loop."""
    return sum([await async_stock(base_url, token, item) for item in items])


@flow
def raises_early(base_url: str) -> int:
    """Fails before it sends anything."""
    raise RuntimeError("no credentials configured")


@task
def stdlib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


@flow
def stdlib_inventory(base_url: str) -> str:
    """Calls the API with urllib by address: recorded, but a replay serves clients other than httpx by name only."""
    return stdlib_get(f"{base_url}/v1/items")


@task(retries=1)
def requests_items(base_url: str, token: str, api_key: str) -> list[int]:
    import requests

    response = requests.get(
        f"{base_url}/v1/items",
        params={"page": 1, "api_key": api_key},
        headers={"Authorization": f"Bearer {token}"},
        timeout=0.5,  # a stall that explore tries on the wire costs its client's timeout, in real time
    )
    response.raise_for_status()
    return [item["id"] for item in response.json()["items"]]


@task
def urllib_stock(base_url: str, token: str, item: int) -> int:
    import json
    import urllib.request

    request = urllib.request.Request(f"{base_url}/v1/items/{item}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=0.5) as response:  # noqa: S310 (the URL is the test's)
        return int(json.loads(response.read())["stock"])


@flow
def clients_inventory(base_url: str, token: str, api_key: str) -> int:
    """The inventory through requests (the list, retried once) and urllib (each item, never retried)."""
    return sum(urllib_stock(base_url, token, item) for item in requests_items(base_url, token, api_key))


@task(retries=1)
async def aiohttp_stock(base_url: str, token: str, item: int) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client,
        client.get(f"{base_url}/v1/items/{item}", timeout=aiohttp.ClientTimeout(total=5)) as response,
    ):
        response.raise_for_status()
        return int((await response.json())["stock"])


@flow
async def aiohttp_inventory(base_url: str, token: str, items: list[int]) -> int:
    """The stock of some items through aiohttp, on the event loop."""
    return sum([await aiohttp_stock(base_url, token, item) for item in items])


@task
def slow_answer(base_url: str) -> int:
    import requests

    return int(requests.get(f"{base_url}/v1/slow", timeout=0.3).json()["n"])  # the API takes longer


@flow
def impatient(base_url: str) -> int:
    """Its client gives up before the API answers: there is no answer to record."""
    return slow_answer(base_url)


@task
def certifi_stock(base_url: str, token: str) -> int:
    import ssl

    import certifi

    trust = ssl.create_default_context(cafile=certifi.where())  # certifi's bundle by name
    with httpx.Client(verify=trust, headers={"Authorization": f"Bearer {token}"}, timeout=5) as client:
        return int(client.get(f"{base_url}/v1/items/3").json()["stock"])


@flow
def certifi_inventory(base_url: str, token: str) -> int:
    """httpx given certifi's bundle by name, as many SDKs do."""
    return certifi_stock(base_url, token)


@task
def ping_database(host: str) -> bytes:
    import socket

    with socket.create_connection((host, 5432), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


@flow
def database_ping(host: str) -> bytes:
    """Speaks a protocol that is not HTTP: nothing a scenario can hold."""
    return ping_database(host)


@task
async def post_note(base_url: str, token: str, note: str) -> str:
    import aiohttp

    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client,
        client.post(f"{base_url}/v1/notes", json={"note": note}, expect100=True) as response,
    ):
        response.raise_for_status()
        return str((await response.json())["saved"])


@flow
async def note_taker(base_url: str, token: str, note: str) -> str:
    """A POST whose client waits for 100 Continue before its body."""
    return await post_note(base_url, token, note)
