"""One GET per HTTP client, each with its own short timeouts, reading the whole body: what a flow would do.

Each returns the status and body it got, or raises what the client raises.
The measured table (``tests/test_wire_faults.py``) records those exceptions.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable

import httpx
import requests
import urllib3

TIMEOUT = 0.2  # seconds: every client's connect and read timeout, in real time on the wire


def httpx_sync(url: str) -> tuple[int, bytes]:
    response = httpx.get(url, timeout=TIMEOUT)
    return response.status_code, response.content


def httpx_async(url: str) -> tuple[int, bytes]:
    async def get() -> tuple[int, bytes]:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(url)
            return response.status_code, response.content

    return asyncio.run(get())


def requests_get(url: str) -> tuple[int, bytes]:
    response = requests.get(url, timeout=TIMEOUT)
    return response.status_code, response.content


def urllib3_get(url: str) -> tuple[int, bytes]:
    with urllib3.PoolManager(timeout=urllib3.Timeout(connect=TIMEOUT, read=TIMEOUT), retries=False) as pool:
        response = pool.request("GET", url)
        return response.status, response.data


def urllib_get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 (a declared https URL)
        return int(response.status), response.read()


def aiohttp_get(url: str) -> tuple[int, bytes]:
    import aiohttp

    async def get() -> tuple[int, bytes]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT, sock_read=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            return response.status, await response.read()

    return asyncio.run(get())


CLIENTS: dict[str, Callable[[str], tuple[int, bytes]]] = {
    "httpx": httpx_sync,
    "httpx async": httpx_async,
    "requests": requests_get,
    "urllib3": urllib3_get,
    "urllib": urllib_get,
    "aiohttp": aiohttp_get,
}


def raised(call: Callable[[str], tuple[int, bytes]], url: str) -> str:
    """The exception ``call`` raises, named as its package exports it; or ``ok <status>`` and the body's size."""
    try:
        status, body = call(url)
    except Exception as exc:  # the measurement: whatever it is, record it
        return exception_name(exc)
    return f"ok {status} ({len(body)} B)"


def exception_name(exc: BaseException) -> str:
    cls = type(exc)
    package = cls.__module__.split(".")[0]
    return cls.__name__ if package == "builtins" else f"{package}.{cls.__name__}"
