"""Cases for every step kind of the respx backend: latency (fixed, uniform, lognormal, past the client's
read timeout, past the task's timeout), each malformed body, ``until`` windows and seeded chaos; and for
clients respx cannot see, on the wire (``transport: wire``: the reference serves them from a loopback server
of its own), and strategies (a case's ``strategy``: the harness runs it as a scenario's strategy, the
reference sets the same options with ``with_options``).

The reference serves them by hand from the language's definition (``reference.Endpoint``), sleeping
latency for real; the harness skips it on the virtual clock.
"""

from __future__ import annotations

from typing import Any

from tests.fidelity.cases import API, case, get, post

STEPS = "tests.fidelity.step_idioms"
ROWS = {"json": {"items": [{"id": 1}, {"id": 2}], "total": 2}}
PLAIN = "http://plain.example.test"  # clients on the wire: plain HTTP, the reference's server has no CA


def steps_case(name: str, flow: str, parameters: dict[str, Any], *endpoints: dict[str, Any], **extra: Any) -> Any:
    spec = case(name, flow, parameters, *endpoints, **extra)
    spec["flow"] = f"{STEPS}:{flow}"
    return spec


MALFORMED = ["truncated_json", "invalid_json", "html", "empty_body", "wrong_content_type", "random_bytes"]

STEP_CASES: list[dict[str, Any]] = [
    *(
        steps_case(
            f"a {kind} body, then JSON",
            "fetch_with_retries",
            {"url": f"{API}/report"},
            get(f"{API}/report", {"malformed": kind}, ROWS),
        )
        for kind in MALFORMED
    ),
    steps_case(
        "a truncated body of the step's own JSON, with a status, twice then JSON",
        "fetch_with_retries",
        {"url": f"{API}/report"},
        get(
            f"{API}/report",
            {"malformed": "truncated_json", "status": 502, "json": {"rows": [1, 2, 3]}, "times": 2},
            ROWS,
        ),
    ),
    steps_case(
        "fixed latency on each answer",
        "sequential_latencies",
        {"urls": [f"{API}/a", f"{API}/b"]},
        get(f"{API}/a", {"json": {"a": 1}, "latency": 0.2}),
        get(f"{API}/b", {"status": 500, "latency": 0.1}, {"json": {"b": 2}, "latency": 0.15}),
        sequential=True,
    ),
    steps_case(
        "uniform and lognormal latency drawn from the seed",
        "sequential_latencies",
        {"urls": [f"{API}/a", f"{API}/b"]},
        get(f"{API}/a", {"json": {"a": 1}, "latency": {"uniform": [0.05, 0.3]}}),
        get(f"{API}/b", {"json": {"b": 2}, "latency": {"lognormal": {"median": 0.1, "sigma": 0.5}}}),
        seed=11,
        sequential=True,
    ),
    steps_case(
        "latency past the client's read timeout, then a quick answer",
        "client_timeout_then_retry",
        {"url": f"{API}/slow"},
        get(f"{API}/slow", {"json": {"late": True}, "latency": 0.5}, {"json": {"late": False}}),
        sequential=True,
    ),
    steps_case(
        "latency past the task's timeout_seconds, then a quick answer",
        "task_timeout_cuts_the_answer",
        {"url": f"{API}/slow"},
        get(f"{API}/slow", {"json": {"late": True}, "latency": 0.6}, {"json": {"late": False}}),
    ),
    steps_case(
        "a window of 503s for 1.9 seconds, then JSON",
        "retries_through_a_window",
        {"url": f"{API}/status"},
        get(f"{API}/status", {"status": 503, "until": 1.9}, {"json": {"up": True}}),
    ),
    steps_case(
        "seeded chaos on three mapped endpoints",
        "mapped_through_chaos",
        {"urls": [f"{API}/item/1", f"{API}/item/2", f"{API}/item/3"]},
        *(
            {
                "request": f"GET {API}/item/{i}",
                "chaos": {
                    "rate": 0.5,
                    "faults": [{"status": 503}, {"fault": "read_timeout"}, {"malformed": "html", "status": 502}],
                    "otherwise": {"json": {"id": i}},
                },
            }
            for i in (1, 2, 3)
        ),
        seed=7,
    ),
    steps_case(
        "strategy: no retries against one 500",
        "fetch_with_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}, ROWS),
        strategy={"retries": 0},
    ),
    steps_case(
        "strategy: exponential delays, capped, through three 503s",
        "fetch_with_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 503, "times": 3}, ROWS),
        strategy={"retries": 4, "retry_delay_seconds": {"exponential": {"base": 0.05, "factor": 2, "cap": 0.15}}},
    ),
    steps_case(
        "strategy: a delay list with jitter through two timeouts",
        "fetch_with_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"fault": "read_timeout", "times": 2}, ROWS),
        strategy={"retries": 3, "retry_delay_seconds": [0.02, 0.05, 0.1], "retry_jitter_factor": 0.5},
    ),
    steps_case(
        "strategy: a task timeout against a slow answer, then a retry",
        "fetch_with_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"json": {"late": True}, "latency": 0.6}, ROWS),
        strategy={"retries": 1, "retry_delay_seconds": 0.05, "timeout_seconds": 0.3},
    ),
    steps_case(
        "strategy: transient retries a 503, not the 404 after it",
        "fetch_with_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 503}, {"status": 404}, ROWS),
        strategy={"retries": 3, "retry_delay_seconds": 0.02, "retry_condition": "transient"},
    ),
    steps_case(
        "strategy: transient honouring Retry-After waits what a 429 asks",
        "fetch_with_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 429, "headers": {"retry-after": "0.3"}}, ROWS),
        strategy={"retries": 2, "retry_delay_seconds": 0, "retry_condition": "transient", "honour_retry_after": True},
    ),
    steps_case(
        "strategy: flow retries instead of task retries",
        "fetch_with_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}, ROWS),
        strategy={"retries": 0, "flow_retries": 1, "flow_retry_delay_seconds": 0.1},
    ),
    steps_case(
        "requests on the wire: a reset, a close before the answer, a garbage status line, then JSON",
        "requests_with_retries",
        {"url": f"{PLAIN}/report"},
        get(
            f"{PLAIN}/report",
            {"fault": "connection_reset"},
            {"fault": "close_before_response"},
            {"fault": "remote_protocol_error"},
            ROWS,
        ),
        transport="wire",
    ),
    steps_case(
        "requests on the wire: a body cut short, a 503 and a stall past the client's timeout, retries exhausted",
        "requests_with_retries",
        {"url": f"{PLAIN}/report"},
        get(f"{PLAIN}/report", {"fault": "partial_body"}, {"status": 503}, {"fault": "read_timeout"}, {"status": 500}),
        transport="wire",
    ),
    steps_case(
        "urllib on the wire: a 500 then JSON, an HTML error page then JSON",
        "urllib_with_retries",
        {"urls": [f"{PLAIN}/a", f"{PLAIN}/b"]},
        get(f"{PLAIN}/a", {"status": 500}, {"json": {"a": 1}}),
        get(f"{PLAIN}/b", {"malformed": "html", "status": 502}, {"json": {"b": 2}, "latency": 0.1}),
        transport="wire",
    ),
    steps_case(
        "a slow submitted run never waited on: the flow returns before its deadline",
        "returns_before_its_deadline",
        {"slow": f"{API}/slow", "fast": f"{API}/fast"},
        get(f"{API}/slow", {"json": {"slow": True}, "latency": 1.0}),
        get(f"{API}/fast", {"json": {"fast": True}}),
    ),
    steps_case(
        "the first of two by as_completed, within the deadline",
        "first_of_two_within_the_deadline",
        {"fast": f"{API}/fast", "slow": f"{API}/slow"},
        get(f"{API}/fast", {"json": {"fast": True}}),
        get(f"{API}/slow", {"json": {"slow": True}, "latency": 1.0}),
    ),
    steps_case(
        "asyncio.create_task left running: the flow returns before its deadline",
        "created_task_left_running",
        {"slow": f"{API}/slow", "fast": f"{API}/fast"},
        get(f"{API}/slow", {"json": {"slow": True}, "latency": 1.0}),
        get(f"{API}/fast", {"json": {"fast": True}}),
    ),
    steps_case(
        "gathered async answers a second away, past the flow's deadline",
        "gathered_answers_past_the_deadline",
        {"urls": [f"{API}/a", f"{API}/b"]},
        get(f"{API}/a", {"json": {"a": 1}, "latency": 1.0}),
        get(f"{API}/b", {"json": {"b": 2}, "latency": 1.0}),
    ),
    steps_case(
        "three mapped runs on one worker wait in turn",
        "one_worker_in_turn",
        {"urls": [f"{API}/item/{i}" for i in range(1, 4)]},
        *(get(f"{API}/item/{i}", {"json": {"id": i}, "latency": 0.2}) for i in range(1, 4)),
        sequential=True,
    ),
    steps_case(
        "a submitted run's state read once, never waited on",
        "reads_a_state_once",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}, ROWS),
    ),
    steps_case(
        "a task reading its own submitted runs' results, past the flow's deadline",
        "nested_results_past_the_deadline",
        {"urls": [f"{API}/a", f"{API}/b"]},
        get(f"{API}/a", {"status": 500}, {"json": {"a": 1}}),
        get(f"{API}/b", {"status": 500}, {"json": {"b": 2}}),
    ),
    steps_case(
        "mapped async runs retrying a second later, past the flow's deadline",
        "mapped_async_retries_past_the_deadline",
        {"urls": [f"{API}/a", f"{API}/b"]},
        get(f"{API}/a", {"status": 500}, {"json": {"a": 1}}),
        get(f"{API}/b", {"status": 500}, {"json": {"b": 2}}),
    ),
    *(
        {
            **steps_case(name, "stores_then_acknowledges", {"url": f"{API}/rows", "ack_url": f"{API}/ack"}, *endpoints),
            "flow": "tests.fidelity.stored_idioms:stores_then_acknowledges",
        }
        for name, endpoints in (
            (
                "rows fetched after two 500s, stored once",
                (get(f"{API}/rows", {"status": 500, "times": 2}, ROWS), post(f"{API}/ack", {"status": 204})),
            ),
            (
                "a failed acknowledgement stores the rows twice",
                (get(f"{API}/rows", ROWS), post(f"{API}/ack", {"status": 500}, {"status": 204})),
            ),
            (
                "an acknowledgement that always fails: stored twice, then Failed",
                (get(f"{API}/rows", ROWS), post(f"{API}/ack", {"status": 500})),
            ),
        )
    ),
]
