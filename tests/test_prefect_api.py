"""Prefect's own API as a faulty dependency: ``prefect_api:`` faults by route, the events stream, the client's
retries on the virtual clock, the server's view, orphan flow runs, ``cancel:`` and the client strategy keys.

What Prefect does with each fault is the oracle's to say (``tests/fidelity/test_api_fidelity.py``, a plain
faulting proxy between a plain Prefect run and its server); these tests pin the language and the machinery.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import Outcome, Scenario, ScenarioError, Session
from harness.checking.expectations import check
from harness.scenario.api_routes import ROUTES, route_of

N = "https://api.example.test/n"
ENDPOINT = f"endpoints:\n  - request: GET {N}\n    responses: [{{json: {{n: 5}}}}]\n"
FETCH = f"flow: tests.flows:fetch_with_retries\nparameters: {{url: {N}}}\n" + ENDPOINT


def passing(session: Session, scenario: Scenario) -> Outcome:
    """The scenario's outcome, which meets every expectation it states."""
    outcome = session.run(scenario)
    assert check(scenario, outcome) == []
    return outcome


def routes(outcome: object, route: str) -> list[str]:
    """What served each request to ``route``, in order."""
    return [c.served for c in outcome.api_calls if c.endpoint == route]  # type: ignore[attr-defined]


# -- the language ------------------------------------------------------------------------------------


def test_routes_are_named_as_prefect_names_them() -> None:
    assert route_of("POST", "/flow_runs/0f8b2dde-bcb4-4aca-ac5f-016fdc7655a9/set_state") == (
        "POST /flow_runs/*/set_state"
    )
    assert route_of("POST", "/flow_runs/") == "POST /flow_runs/"
    assert route_of("POST", "/flow_runs/filter") == "POST /flow_runs/filter"  # a literal beats an id
    assert route_of("GET", "/flows/name/etl") == "GET /flows/name/*"
    assert {"POST /flow_runs/", "POST /flow_runs/*/set_state", "GET /admin/version"} <= set(ROUTES)


@pytest.mark.parametrize(
    ("body", "where", "line", "says"),
    [
        (
            "prefect_api:\n  - request: POST /flow_run/*/set_state\n    responses: [{status: 503}]\n",
            "prefect_api[0].request",
            2,
            "Prefect's API has no route 'POST /flow_run/*/set_state'; did you mean 'POST /flow_runs/*/set_state'?",
        ),
        (
            f"endpoints:\n  - request: GET {N}\n    responses: [{{pass: true}}]\n",
            "endpoints[0].responses[0].pass",
            3,
            "`pass` lets a request through to Prefect's API: only `prefect_api` steps have it",
        ),
        (
            f"endpoints:\n  - request: GET {N}\n    responses: [{{fault: lost_answer}}]\n",
            "endpoints[0].responses[0].fault",
            3,
            "fault 'lost_answer' is applied by Prefect's server: only `prefect_api` has it",
        ),
        (
            "prefect_api:\n  - request: POST /flow_runs/\n    responses: [{fault: partial_body}]\n",
            "prefect_api[0].responses[0].fault",
            3,
            "fault 'partial_body' exists only on a real connection; Prefect's client is httpx",
        ),
        (
            "prefect_api:\n  - request: POST /flow_runs/\n    responses: [{pass: true, status: 500}]\n",
            "prefect_api[0].responses[0]",
            3,
            "a `pass` step lets the real server answer: remove its status",
        ),
        (
            "prefect_api:\n  - {request: POST /flow_runs/, responses: [{status: 503}]}\n"
            "  - {request: POST /flow_runs/, responses: [{pass: true}]}\n",
            "prefect_api[1].request",
            3,
            "route 'POST /flow_runs/' is declared twice",
        ),
        (
            "events: [{drop: true, disconnect: true}]\n",
            "events[0]",
            1,
            "an events step is one of `pass: true`, `drop: true` (or a probability) and `disconnect: true`",
        ),
        ("events: [{drop: 1.5}]\n", "events[0].drop", 1, "drop is true, or the probability an event is lost"),
        (
            "expect:\n  prefect_api:\n    calls: {POST /flowruns/: 1}\n",
            "expect.prefect_api.calls",
            3,
            "did you mean 'POST /flow_runs/'?",
        ),
        (
            "expect:\n  server:\n    tasks: {fetch_statuss: Completed}\n",
            "expect.server.tasks.fetch_statuss",
            3,
            "defines no task 'fetch_statuss'; did you mean 'fetch_status'?",
        ),
        (
            "crash: {at: {after_return: fetch_status}}\ncancel: {at: {after_return: fetch_status}}\n",
            "cancel.at",
            2,
            "`cancel:` and `crash:` are both at after_return: fetch_status",
        ),
        (
            "prefect_api:\n  - request: WS /events/in\n    responses: [{pass: true}]\n",
            "prefect_api[0].request",
            2,
            "WS /events/in is the events stream: fault it with `events:` steps",
        ),
        ("expect:\n  raises: '('\n", "expect.raises", 2, "raises is not a valid regular expression"),
        (
            "expect:\n  flow: Completed\n  raises: Runtime\n",
            "expect",
            1,
            "`raises` says the flow's call raised and `flow` that it returned a state",
        ),
        (
            "cancel: {at: {after_return: fetch_status}, how: runner}\ncrash: {at: {before_task: fetch_status}}\n",
            "crash",
            2,
            "`crash:` cannot go with `cancel: {how: runner}`, whose flow runs in a process Prefect's runner starts",
        ),
        (
            "cancel: {at: {after_return: fetch_status}, how: runner}\nconcurrency_limits: {tag: {db: 1}}\n",
            "concurrency_limits",
            2,
            "`concurrency_limits:` cannot go with `cancel: {how: runner}`",
        ),
        (
            "cancel: {at: {after_return: fetch_status}, how: runner}\nexpect:\n  result: 200\n",
            "expect.result",
            3,
            "a run served by Prefect's runner returns to the runner, not to the harness",
        ),
        (
            "cancel: {at: {after_return: fetch_status}, how: runner_please}\n",
            "cancel.how",
            1,
            "unknown way to cancel 'runner_please'",
        ),
    ],
)
def test_bad_input_is_refused_at_its_field_and_line(
    scenario_from: Callable[[str], Scenario], body: str, where: str, line: int, says: str
) -> None:
    head = f"name: bad\n{FETCH}" if not body.startswith("endpoints:") else f"name: bad\n{FETCH.split('endpoints:')[0]}"
    with pytest.raises(ScenarioError) as raised:
        scenario_from(head + body)
    problems = [(p.field, p.line, p.message) for p in raised.value.problems]
    assert any(
        (field, at) == (where, head.count("\n") + line) and says in message for field, at, message in problems
    ), problems


# -- the client's retries, on the virtual clock -------------------------------------------------------


def test_two_503s_on_set_state_are_absorbed_by_the_clients_retries_waiting_what_retry_after_asks(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: set_state 503 twice\n{FETCH}"
        "prefect_api:\n  - request: POST /flow_runs/*/set_state\n    responses:\n"
        "      - {status: 503, headers: {retry-after: '2'}, times: 2}\n      - pass: true\n"
        "expect:\n  flow: Completed\n  prefect_api:\n    calls: {POST /flow_runs/*/set_state: 4, POST /flow_runs/: 1}\n"
        "  server: {flow: Completed, tasks: {fetch_status: Completed}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert routes(outcome, "POST /flow_runs/*/set_state") == ["503", "503", "pass", "pass"]
    # Retry-After: 2 with Prefect's jitter factor 0.2: each wait drawn in [2, 2.4] s, from the scenario's seed
    assert 4.0 <= outcome.waited_s <= 4.8
    again = harness_session.run(scenario)
    assert again.waited_s == outcome.waited_s  # seeded: the same draws


def test_a_lost_answer_on_set_state_costs_the_read_timeout_and_one_more_request(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: lost answer\n{FETCH}"
        "prefect_api:\n  - request: POST /flow_runs/*/set_state\n    responses:\n"
        "      - fault: lost_answer\n      - pass: true\n"
        "expect:\n  flow: Completed\n  server: {flow: Completed}\n  invariants: [no_orphan_flow_runs]\n"
    )
    outcome = passing(harness_session, scenario)
    assert routes(outcome, "POST /flow_runs/*/set_state") == ["lost_answer", "pass", "pass"]
    # Prefect's client waits its read timeout (PREFECT_API_REQUEST_TIMEOUT, 60 s), then backs off 2**1 s +- 20%
    assert 60 + 1.6 <= outcome.waited_s <= 60 + 2.4


def test_a_lost_answer_on_creating_the_flow_run_leaves_an_orphan_on_the_server(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: orphan\n{FETCH}"
        "prefect_api:\n  - request: POST /flow_runs/\n    responses:\n      - fault: lost_answer\n      - pass: true\n"
        "expect:\n  flow: Completed\n  prefect_api: {calls: {POST /flow_runs/: 2}}\n"
        "  invariants: [no_orphan_flow_runs]\n"
    )
    outcome = harness_session.run(scenario)
    (mismatch,) = check(scenario, outcome)
    assert outcome.server is not None and outcome.server.flow is not None
    assert outcome.server.flow.name == "Completed"
    (orphan,) = outcome.server.orphans
    assert orphan.endswith(": Pending")
    assert mismatch.field == "expect.invariants[0]"
    assert mismatch.observed == f"the server holds flow runs never run to an end: {orphan}"


def test_a_connect_error_on_the_first_request_fails_the_call_at_once_and_later_ones_are_retried(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    first = scenario_from(
        f"name: unreachable\n{FETCH}"
        "prefect_api:\n  - request: GET /admin/version\n    responses: [{fault: connect_error}, {pass: true}]\n"
        "expect:\n  raises: '^RuntimeError: Failed to reach API at '\n"
        "  prefect_api: {calls: {GET /admin/version: 1, POST /flow_runs/: 0}}\n"
        "  invariants: [no_orphan_flow_runs]\n"
    )
    outcome = passing(harness_session, first)
    assert outcome.flow.name == "no state" and outcome.server is not None and outcome.server.flow is None
    later = scenario_from(
        f"name: reconnects\n{FETCH}"
        "prefect_api:\n  - request: POST /flows/\n    responses: [{fault: connect_error}, {pass: true}]\n"
        "expect:\n  flow: Completed\n  prefect_api: {calls: {POST /flows/: 2}}\n"
    )
    assert check(later, harness_session.run(later)) == []


def test_an_outage_longer_than_the_clients_retries_ends_the_call_and_strands_the_run_on_the_server(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: outage\n{FETCH}"
        "prefect_api:\n  - request: POST /flow_runs/*/set_state\n    responses: [{pass: true}, {status: 503}]\n"
        "expect:\n  raises: \"^PrefectHTTPStatusError: Server error '503 Service Unavailable'\"\n"
        "  prefect_api: {calls: {POST /flow_runs/*/set_state: 7}}\n"
        "  server: {flow: Running, tasks: {fetch_status: Completed}}\n"
        "  invariants: [no_orphan_flow_runs]\n"
        "strategies:\n  one client retry:\n    client_max_retries: 1\n    expect:\n"
        "      raises: '^PrefectHTTPStatusError'\n      prefect_api: {calls: {POST /flow_runs/*/set_state: 3}}\n"
        "      server: {flow: Running, tasks: {fetch_status: Completed}}\n"
    )
    outcome = harness_session.run(scenario)
    mismatches = check(scenario, outcome)
    # The flow's own run, stuck Running: not finished by anyone, so the invariant names it
    assert [m.field for m in mismatches] == ["expect.invariants[0]"], mismatches
    # 1 Running + 1 Completed and its 5 retries, backing off 2**n s (n = 2..6) +- 20%
    assert 0.8 * (4 + 8 + 16 + 32 + 64) <= outcome.waited_s <= 1.2 * (4 + 8 + 16 + 32 + 64)
    (_, variant, policy) = scenario.cases()[1]
    assert check(variant, harness_session.run(variant, policy=policy)) == []


def test_extra_codes_make_the_client_retry_a_500(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: a 500 on set_state\n{FETCH}"
        "prefect_api:\n  - request: POST /flow_runs/*/set_state\n    responses:\n"
        "      - {status: 500, json: {detail: boom}}\n      - pass: true\n"
        "expect:\n  raises: \"^PrefectHTTPStatusError: Server error '500 Internal Server Error'\"\n"
        "  server: {flow: Pending}\n"
        "strategies:\n  retry 500:\n    client_retry_extra_codes: [500]\n    client_retry_jitter_factor: 0\n"
        "    expect:\n      flow: Completed\n      prefect_api: {calls: {POST /flow_runs/*/set_state: 3}}\n"
        "      server: {flow: Completed}\n      virtual_time: {min: 2, max: 2.5}\n"
    )
    for _, case, policy in scenario.cases():
        assert check(case, harness_session.run(case, policy=policy)) == [], case.name


# -- the events stream -------------------------------------------------------------------------------


def test_dropped_events_leave_the_servers_task_run_behind_and_a_disconnect_loses_nothing(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    dropped = scenario_from(
        f"name: dropped\n{FETCH}events: [{{pass: true}}, {{drop: true}}]\n"
        "expect:\n  flow: Completed\n  tasks: {fetch_status: Completed}\n"
        "  server: {flow: Completed, tasks: {fetch_status: Pending}}\n"
        "  prefect_api: {calls: {WS /events/in: 3}}\n"
    )
    outcome = passing(harness_session, dropped)
    assert routes(outcome, "WS /events/in") == ["pass", "drop", "drop"]
    disconnected = scenario_from(
        f"name: disconnected\n{FETCH}events: [{{pass: true}}, {{disconnect: true}}, {{pass: true}}]\n"
        "expect:\n  flow: Completed\n  server: {flow: Completed, tasks: {fetch_status: Completed}}\n"
    )
    outcome = passing(harness_session, disconnected)
    # Running meets the closed connection; the client reconnects and resends what the server has not
    # confirmed (Pending, Running), then Running again, then Completed
    served = [(c.url.rsplit(".", 1)[-1], c.served) for c in outcome.api_calls if c.endpoint == "WS /events/in"]
    assert served == [
        ("Pending", "pass"),
        ("Running", "disconnect"),
        ("Pending", "pass"),
        ("Running", "pass"),
        ("Running", "pass"),
        ("Completed", "pass"),
    ]


# -- cancellation ------------------------------------------------------------------------------------


def test_cancelling_through_the_api_alone_does_not_stop_the_flow_and_it_ends_cancelling(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Nothing in a flow's own process watches the API: every task runs; the flow's Completed is rejected
    by the server, which keeps Cancelling, and the engine returns that state, running on_cancellation."""
    scenario = scenario_from(
        "name: cancelled\nflow: tests.flows:three_steps\ncancel: {at: {after_return: step}}\n"
        "expect:\n  flow: Cancelling\n  result: null\n"
        "  tasks: {step: [Completed, Completed, Completed]}\n"
        "  server: {flow: Cancelling, tasks: {step: Completed}}\n"
        "  hooks: {flow: {on_cancellation: 1}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert outcome.cancelled is not None and outcome.cancelled.startswith("after_return: step (api_only) at ")
    never = scenario_from(
        "name: never cancelled\nflow: tests.flows:three_steps\ncancel: {at: {at_time: 30}}\n"
        "expect:\n  flow: Completed\n"
    )
    (mismatch,) = check(never, harness_session.run(never))
    assert (mismatch.field, mismatch.observed, mismatch.line) == ("cancel.at", "it never did", 3)


# -- every transport, every client ------------------------------------------------------------------


def test_an_async_flows_client_meets_the_same_faults(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: async\nflow: tests.flows:async_fetch\n{ENDPOINT}"
        "prefect_api:\n  - request: POST /flow_runs/*/set_state\n    responses:\n"
        "      - {status: 503, headers: {retry-after: '1'}}\n      - fault: lost_answer\n      - pass: true\n"
        "expect:\n  flow: Completed\n  result: 5\n  prefect_api: {calls: {POST /flow_runs/*/set_state: 4}}\n"
        "  server: {flow: Completed, tasks: {afetch: Completed}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert routes(outcome, "POST /flow_runs/*/set_state") == ["503", "lost_answer", "pass", "pass"]


def test_with_httpx_on_the_wire_prefects_api_is_still_answered_by_route(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: wire\ntransport: wire\n{FETCH}"
        "prefect_api:\n  - request: POST /flow_runs/*/set_state\n"
        "    responses: [{status: 503, headers: {retry-after: '0'}}, {pass: true}]\n"
        "expect:\n  flow: Completed\n  prefect_api: {calls: {POST /flow_runs/*/set_state: 3}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert [c.transport for c in outcome.calls] == ["wire"]


def test_a_run_without_prefect_api_leaves_prefects_traffic_alone(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(f"name: plain\n{FETCH}expect:\n  flow: Completed\n")
    outcome = harness_session.run(scenario)
    assert outcome.api_calls == () and outcome.server is None


def test_a_watched_runs_patches_are_in_place_during_it_and_gone_after(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    import prefect._internal.version_checking as checking
    import prefect.client.base as client_base
    import prefect.events.related as related
    from websockets.asyncio.client import ClientConnection

    cache, resources, real_time = checking._API_VERSION_CHECK_CACHE, related.RESOURCE_CACHE, client_base.time
    watched = scenario_from("name: watched\nflow: tests.flows:peeks_at_patches\nevents: [{pass: true}]\n")
    # during the run: the client waits on the virtual clock, the events pass the harness, the version check
    # cache holds this run's own check only
    assert harness_session.run(watched).result == ["_TimeShim", "wrapped", "1"]
    assert checking._API_VERSION_CHECK_CACHE is cache and related.RESOURCE_CACHE is resources
    assert client_base.time is real_time and "send" not in vars(ClientConnection)
    plain = scenario_from("name: plain\nflow: tests.flows:peeks_at_patches\n")
    assert harness_session.run(plain).result[:2] == ["module", "plain"]  # an unwatched run's client waits for real


def test_latency_past_the_clients_timeouts_on_prefects_api(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Past the read timeout (60 s) a passed request is applied and its answer lost; a status is never sent;
    a refused connection that takes longer than the connect timeout is the client's ConnectTimeout."""
    scenario = scenario_from(
        f"name: slow API\n{FETCH}"
        "prefect_api:\n"
        "  - request: POST /flows/\n    responses: [{pass: true, latency: 70}, {pass: true}]\n"
        "  - request: POST /flow_runs/\n    responses: [{status: 503, latency: 61}, {pass: true}]\n"
        "  - request: GET /flow_runs/*\n    responses: [{fault: connect_error, latency: 65}, {pass: true}]\n"
        "expect:\n  flow: Completed\n"
        "  prefect_api: {calls: {POST /flows/: 2, POST /flow_runs/: 2, GET /flow_runs/*: 2}}\n"
        "  invariants: [no_orphan_flow_runs]\n"
    )
    outcome = passing(harness_session, scenario)
    assert routes(outcome, "POST /flows/")[0] == "pass, answer lost (latency 70 s > client timeout 60 s)"
    assert routes(outcome, "POST /flow_runs/")[0] == "read_timeout (latency 61 s > client timeout 60 s)"
    assert routes(outcome, "GET /flow_runs/*")[0] == "connect_timeout (latency 65 s > client connect timeout 60 s)"
    assert 3 * 60 < outcome.waited_s < 3 * 60 + 3 * 2.4  # each timeout, then the client's backoff


def test_only_events_faulted_is_enough_to_serve_them(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(f"name: events only\n{FETCH}events: [{{drop: true}}]\nexpect:\n  flow: Completed\n")
    outcome = harness_session.run(scenario)
    assert set(routes(outcome, "WS /events/in")) == {"drop"}


def test_across_a_crash_the_killed_runs_requests_and_server_view_count(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The killed run created two flow runs (a lost answer); the server keeps one Pending and the killed one
    Running: both unfinished. The rerun goes on with each schedule where the killed run left it."""
    scenario = scenario_from(
        f"name: lost answer then killed\n{FETCH}"
        "prefect_api:\n  - request: POST /flow_runs/\n    responses: [{fault: lost_answer}, {pass: true}]\n"
        "events: [{pass: true, times: 3}, {drop: true}]\n"
        "crash: {at: {after_return: fetch_status}}\n"
        "expect:\n  flow_runs: [{flow: Running}, {flow: Completed}]\n"
        "  prefect_api: {calls: {POST /flow_runs/: 3}}\n  invariants: [no_orphan_flow_runs]\n"
    )
    outcome = harness_session.run(scenario)
    (mismatch,) = check(scenario, outcome)
    assert mismatch.field == "expect.invariants[0]"
    assert mismatch.observed.count(": Pending") == 1 and mismatch.observed.count("(the flow's own run): Running") == 1
    killed, rerun = outcome.runs
    assert routes(killed, "POST /flow_runs/") == ["lost_answer", "pass"]
    assert routes(rerun, "POST /flow_runs/") == ["pass"]
    # One schedule, gone on: the rerun's events take the steps after those the killed run's took. How many of
    # the killed run's events went before the kill is Prefect's race (they are sent in the background).
    before, after = routes(killed, "WS /events/in"), routes(rerun, "WS /events/in")
    schedule = ["pass"] * 3 + ["drop"] * 10
    assert before == schedule[: len(before)] and after == schedule[len(before) : len(before) + len(after)]
    assert len(after) == 3  # the rerun's task run: Pending, Running, Completed
    assert rerun.server is not None and rerun.server.flow is not None and rerun.server.flow.name == "Completed"


def test_a_run_cancelled_then_killed_reports_both(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: cancelled then killed\nflow: tests.flows:three_steps\n"
        "cancel: {at: {after_return: step}}\ncrash: {at: {after_return: {task: step, run: 2}}}\n"
        "expect:\n  flow_runs: [{flow: Cancelling}, {flow: Completed}]\n"
    )
    outcome = passing(harness_session, scenario)
    assert outcome.cancelled is not None and outcome.cancelled.startswith("after_return: step (api_only) at ")
    assert outcome.crashed == "after_return: step (run 2) (kill)"
