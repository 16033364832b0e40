"""The crash oracle's cases: plain data, shared by the harness side and the crash reference.

A case is a scenario's flow (of ``tests.fidelity.crash_idioms``), its
endpoints, ``crash`` (``at``: one point, ``how``), ``reruns``,
``rerun_after`` and ``strategy`` as a scenario writes them.
"""

from __future__ import annotations

from typing import Any

from tests.fidelity.crash_idioms import API

IDIOMS = "tests.fidelity.crash_idioms"
SEARCH = f"GET {API}/complaints?size=2"


def search(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"request": SEARCH, "responses": list(steps or ({"json": {"ids": [7, 8]}},))}


def crash_case(name: str, flow: str = "etl", **extra: Any) -> dict[str, Any]:
    return {"name": name, "flow": f"{IDIOMS}:{flow}", "parameters": {"size": 2}, "endpoints": [search()], **extra}


def at(point: str, task: str, how: str = "kill") -> dict[str, Any]:
    return {"at": {point: task}, "how": how}


CACHED = {"persist_result": True, "cache_policy": "inputs+task_source"}


def tag_limited(tag: str, tasks: str = "store") -> dict[str, Any]:
    """A tag limit of one slot, and the strategy that puts its tag on ``tasks`` (a tag of the case's own: the
    reference runs cases side by side on one server)."""
    return {"concurrency_limits": {"tag": {tag: 1}}, "strategy": {"tasks": tasks, "tags": [tag]}}


CRASH_CASES: list[dict[str, Any]] = [
    crash_case("killed after the store returned", crash=at("after_return", "store")),
    crash_case("killed before the store started", crash=at("before_task", "store")),
    crash_case("killed after the fetch returned", crash=at("after_return", "fetch")),
    crash_case("killed after the store committed", crash=at("after_commit", "store")),
    crash_case("killed once the server recorded the store", crash=at("after_task", "store")),
    crash_case("killed after the search answered", crash={"at": {"after_call": SEARCH}, "how": "kill"}),
    crash_case("terminated after the store returned", crash=at("after_return", "store", "terminate")),
    crash_case("terminated before the store started", crash=at("before_task", "store", "terminate")),
    crash_case("interrupted after the store returned", crash=at("after_return", "store", "interrupt")),
    crash_case(
        "terminated in a submitted store's thread", flow="etl_submitted", crash=at("after_return", "store", "terminate")
    ),
    crash_case("killed after the store committed, cached", crash=at("after_commit", "store"), strategy=CACHED),
    crash_case("killed after the store returned, cached", crash=at("after_return", "store"), strategy=CACHED),
    crash_case("an async flow killed after its store returned", flow="etl_async", crash=at("after_return", "astore")),
    crash_case("killed holding a tag limit's slot", crash=at("after_return", "store"), reruns=0, **tag_limited("k1")),
    crash_case(
        "terminated holding a tag limit's slot",
        crash=at("after_return", "store", "terminate"),
        reruns=0,
        **tag_limited("t1"),
    ),
    crash_case(
        "interrupted holding a tag limit's slot",
        crash=at("after_return", "store", "interrupt"),
        reruns=0,
        **tag_limited("i1"),
    ),
    crash_case("run twice under a tag limit", reruns=1, **tag_limited("r1")),
    crash_case(
        "two stores side by side under a tag limit of one", flow="etl_two_stores", **tag_limited("s1", "store*")
    ),
    crash_case("run twice", reruns=1),
    crash_case("run twice, cached", reruns=1, strategy=CACHED),
    crash_case(
        "run again once the cache expired",
        reruns=1,
        rerun_after=0.6,
        strategy={**CACHED, "cache_expiration": 0.3},
    ),
    crash_case(
        "killed after a 503, the search goes on with its next step",
        endpoints=[search({"status": 503}, {"json": {"ids": [7, 8]}})],
        crash={"at": {"after_call": SEARCH}, "how": "kill"},
    ),
]
