"""The function-fault oracle's cases: plain data, shared by the harness side and the reference.

A case is a scenario's flow (of ``tests.fidelity.function_idioms``), its ``functions`` as a scenario writes
them, and ``by_hand``: how the reference makes the real call fail instead (``reader``: a second connection
holds a read transaction on the database, so a commit cannot take the write lock and waits out its busy
timeout; freed after ``failures`` failed attempts, or never; ``parameters``: what the reference runs the
flow with instead, a page limit on the database, a path on a full device, or the seconds a call really
takes where the harness gives it latency).
"""

from __future__ import annotations

from typing import Any

IDIOMS = "tests.fidelity.function_idioms"


def function_case(name: str, flow: str, functions: list[dict[str, Any]], by_hand: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "flow": f"{IDIOMS}:{flow}", "parameters": {}, "functions": functions, "by_hand": by_hand}


def steps(call: str, *responses: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"call": call, "responses": list(responses)}]


FUNCTION_CASES: list[dict[str, Any]] = [
    function_case(
        "a commit refused a busy database twice, then committed by the third attempt",
        "stored",
        steps("sqlite3:commit", {"raise": "sqlite_busy", "times": 2}, {"pass": True}),
        {"reader": {"failures": 2}},
    ),
    function_case(
        "a commit refused a busy database on every attempt",
        "stored",
        steps("sqlite3:commit", {"raise": "sqlite_busy"}),
        {"reader": {"failures": None}},
    ),
    function_case(
        "an insert into a full database, not retried",
        "stored",
        steps("sqlite3:execute", {"pass": True}, {"raise": "sqlite_full"}, {"pass": True}),
        {"parameters": {"max_pages": 2}},
    ),
    function_case(
        "a write to a full disk, not retried",
        "exported",
        steps("file:write", {"raise": "disk_full"}, {"pass": True}),
        {"parameters": {"path": "/dev/full"}},
    ),
    function_case(
        "a call slower than its task's timeout",
        "waited",
        steps(f"{IDIOMS}:slow", {"latency": 0.5}),
        {"parameters": {"seconds": 0.5}},
    ),
]
