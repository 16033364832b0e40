"""The user's integration tests: real sockets to a local server, with requests, httpx, urllib and aiohttp."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aiohttp
import httpx
import requests


def test_requests(local_server: str) -> None:
    assert requests.get(f"{local_server}/a", timeout=5).json() == {"path": "/a"}


def test_httpx(local_server: str) -> None:
    assert httpx.get(f"{local_server}/b").json() == {"path": "/b"}


def test_urllib(local_server: str) -> None:
    with urllib.request.urlopen(f"{local_server}/c", timeout=5) as response:
        assert json.load(response) == {"path": "/c"}


def test_aiohttp_in_asyncio(local_server: str) -> None:
    async def fetch() -> object:
        async with aiohttp.ClientSession() as session, session.get(f"{local_server}/d") as response:
            return await response.json()

    assert asyncio.run(fetch()) == {"path": "/d"}


def test_localhost_resolves(local_server: str) -> None:
    port = local_server.rsplit(":", 1)[1]
    assert httpx.get(f"http://localhost:{port}/e").json() == {"path": "/e"}
