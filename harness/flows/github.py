"""The study's GitHub stars flow: ``get_stars`` with ``retries=3``.

As in the seed it prints each count; it also returns the counts so that a
scenario can assert them.
"""

from __future__ import annotations

import httpx
from prefect import flow, task


@task(retries=3)
def get_stars(repo: str) -> int:
    url = f"https://api.github.com/repos/{repo}"
    count = httpx.get(url).json()["stargazers_count"]
    print(f"{repo} has {count} stars!")
    return count


@flow(name="GitHub Stars")
def github_stars(repos: list[str]) -> list[int]:
    return [get_stars(repo) for repo in repos]
