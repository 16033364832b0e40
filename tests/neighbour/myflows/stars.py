"""A user's flow, tested both by the user's own tests and by a scenario."""

from __future__ import annotations

import httpx
from prefect import flow, get_run_logger, task


@task(retries=2)
def get_stars(repo: str) -> int:
    get_run_logger().info("asking for %s", repo)
    response = httpx.get(f"https://api.github.com/repos/{repo}")
    response.raise_for_status()
    stars: int = response.json()["stargazers_count"]
    return stars


@flow
def stars(repos: list[str]) -> list[int]:
    get_run_logger().info("counting stars of %d repositories", len(repos))
    return [get_stars(repo) for repo in repos]


@task
def double(x: int) -> int:
    return 2 * x


@flow
def doubled(xs: list[int]) -> list[int]:
    get_run_logger().info("doubling %s", xs)
    return [f.result() for f in double.map(xs)]
