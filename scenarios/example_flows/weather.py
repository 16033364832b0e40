"""Flows that share one httpx client with a ``base_url``, sync and async."""

from __future__ import annotations

import asyncio

import httpx
from prefect import flow, task

BASE_URL = "https://weather.example.test/v1"


@task(retries=2)
def fetch_city(client: httpx.Client, city: str) -> float:
    response = client.get("/current", params={"city": city})
    response.raise_for_status()
    return float(response.json()["temp_c"])


@flow
def city_temperatures(cities: list[str]) -> dict[str, float]:
    """One shared client for every task run, as connection pooling advice suggests."""
    with httpx.Client(base_url=BASE_URL, timeout=5.0) as client:
        return {city: fetch_city(client, city) for city in cities}


@task(retries=1)
async def fetch_city_async(client: httpx.AsyncClient, city: str) -> float:
    response = await client.get("/current", params={"city": city})
    response.raise_for_status()
    return float(response.json()["temp_c"])


@flow
async def city_temperatures_async(cities: list[str]) -> dict[str, float]:
    """The async variant: one AsyncClient, the cities fetched concurrently."""
    async with httpx.AsyncClient(base_url=BASE_URL, timeout=5.0) as client:
        temps = await asyncio.gather(*(fetch_city_async(client, c) for c in cities))
    return dict(zip(cities, temps, strict=True))
