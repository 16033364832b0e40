"""The API oracle's cases: plain data, shared by the harness side and the API reference.

A case is a flow of ``tests.fidelity.api_idioms``, its ``prefect_api`` and
``events`` faults and ``cancel`` as a scenario writes them, and ``strategy``
(the client's settings). ``unreachable`` says the API refuses the first
connection: the reference points the flow at a port nobody listens on.

Real time is kept short in the reference: 503s ask ``Retry-After: 0`` (no
wait), and a lost answer is met with the client's retries off and a
read timeout of 0.5 s (the client's backoff is 2 s and more).
"""

from __future__ import annotations

from typing import Any

IDIOMS = "tests.fidelity.api_idioms"
SET_STATE = "POST /flow_runs/*/set_state"
BUSY = {"status": 503, "headers": {"retry-after": "0"}}
NO_CLIENT_RETRIES = {"client_max_retries": 0}


def api_case(name: str, flow: str = "sums", **extra: Any) -> dict[str, Any]:
    return {"name": name, "flow": f"{IDIOMS}:{flow}", **extra}


def route(request: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"request": request, "responses": list(steps)}


API_CASES: list[dict[str, Any]] = [
    api_case("set_state answers 503 twice", prefect_api=[route(SET_STATE, {**BUSY, "times": 2}, {"pass": True})]),
    api_case(
        "an async flow's set_state answers 503 twice",
        flow="async_sums",
        prefect_api=[route(SET_STATE, {**BUSY, "times": 2}, {"pass": True})],
    ),
    api_case(
        "set_state answers 503 past the client's retries",
        prefect_api=[route(SET_STATE, {"pass": True}, BUSY)],
        strategy={"client_max_retries": 2},
    ),
    api_case(
        "set_state answers 500, retried as an extra code",
        prefect_api=[route(SET_STATE, {"status": 500, "headers": {"retry-after": "0"}}, {"pass": True})],
        strategy={"client_retry_extra_codes": [500]},
    ),
    api_case(
        "set_state answers 500, not retried",
        prefect_api=[route(SET_STATE, {"pass": True}, {"status": 500}, {"pass": True})],
    ),
    api_case(
        "creating the flow run loses its answer",
        prefect_api=[route("POST /flow_runs/", {"fault": "lost_answer"}, {"pass": True})],
        strategy=NO_CLIENT_RETRIES,
    ),
    api_case(
        "setting Running loses its answer",
        prefect_api=[route(SET_STATE, {"fault": "lost_answer"}, {"pass": True})],
        strategy=NO_CLIENT_RETRIES,
    ),
    api_case(
        "the API refuses the first connection",
        prefect_api=[route("GET /admin/version", {"fault": "connect_error"})],
        unreachable=True,
    ),
    api_case("task-run events dropped after the first", events=[{"pass": True}, {"drop": True}]),
    api_case(
        "cancelled through the API as the second step returns",
        flow="steps",
        cancel={"at": {"after_return": {"task": "step", "run": 2}}},
    ),
]
