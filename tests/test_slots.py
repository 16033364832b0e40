"""``concurrency_limits:``: Prefect's tag and global limits on the session's server, their slots, leases and
repossessor on the virtual clock, and ``expect.slots``.

Whether a slot is leaked by a kill or given back by a terminated run, and whether a limit keeps its task runs
apart, is the crash oracle's to say (``tests/fidelity/crash_cases.py``, plain Prefect killed by hand); these
tests pin the language, the virtual waits and what the harness leaves behind.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import Outcome, Scenario, ScenarioError, Session
from harness.checking.expectations import check
from harness.run.slots import LeaseClock

N = "https://api.example.test/n"


def endpoint(*steps: str) -> str:
    return f"endpoints:\n  - request: GET {N}\n    responses:\n" + "".join(f"      - {s}\n" for s in steps)


def passing(session: Session, scenario: Scenario) -> Outcome:
    outcome = session.run(scenario)
    assert check(scenario, outcome) == []
    return outcome


def waits(outcome: Outcome, limit: str = "db") -> list[float]:
    return sorted(seconds for _, seconds in outcome.slots[limit].waited)


# -- the language ------------------------------------------------------------------------------------


HEAD = f"name: bad\nflow: tests.flows:tagged_side_by_side\nparameters: {{url: {N}}}\n" + endpoint("json: {n: 1}")


@pytest.mark.parametrize(
    ("body", "where", "line", "says"),
    [
        ("concurrency_limits:\n  tag: {db: 0}\n", "concurrency_limits.tag.db", 2, "must be > 0, got 0"),
        ("concurrency_limits:\n  global: {warehouse: -2}\n", "concurrency_limits.global.warehouse", 2, "must be > 0"),
        (
            "concurrency_limits:\n  tag: {db: 1}\n  global: {db: 2}\n",
            "concurrency_limits",
            1,
            "'db' is both a tag limit and a global limit",
        ),
        ("concurrency_limits:\n  tags: {db: 1}\n", "concurrency_limits.tags", 2, ""),
        (
            "concurrency_limits:\n  tag: {db: 1}\nexpect:\n  slots:\n    dbb: {held_after: 0}\n",
            "expect.slots.dbb",
            5,
            "'dbb' is not a declared concurrency limit; did you mean 'db'?",
        ),
        (
            "expect:\n  slots:\n    db: {held_after: 0}\n",
            "expect.slots.db",
            3,
            "add it under `concurrency_limits`",
        ),
        (
            "concurrency_limits:\n  tag: {db: 1}\nexpect:\n  slots:\n    db: {waited: {max: -1}}\n",
            "expect.slots.db.waited.max",
            5,
            "expected a number of seconds >= 0, got -1",
        ),
        (
            "concurrency_limits:\n  global: {a/b: 1}\n",
            "concurrency_limits.global.a/b",
            2,
            "a limit's name cannot hold / (Prefect refuses /%&><)",
        ),
        (
            "concurrency_limits:\n  global: {'tag:db': 1}\n",
            "concurrency_limits",
            1,
            "global limit 'tag:db' is how Prefect names the tag limit 'db'",
        ),
        (
            "concurrency_limits:\n  tag: {db: 1}\nexpect:\n  slots:\n    db: {waited: {min: 10, max: 5}}\n",
            "expect.slots.db.waited",
            5,
            "min 10 is above max 5",
        ),
        (
            "concurrency_limits:\n  tag: {db: 1}\nexpect:\n  slots:\n    db: {waited: {}}\n",
            "expect.slots.db.waited",
            5,
            "an empty `waited` checks nothing",
        ),
        (
            "concurrency_limits:\n  tag: {db: 2}\nexpect:\n  slots:\n    db: {held_after: 3}\n",
            "expect.slots.db.held_after",
            5,
            "limit 'db' has 2 slots: it cannot hold 3",
        ),
        (
            "concurrency_limits:\n  tag: {db: 1}\nstrategies:\n  tagged:\n    tags: ['']\n",
            "strategies.tagged.tags[0]",
            5,
            "at least 1 character",
        ),
    ],
)
def test_bad_input_is_refused_at_its_field_and_line(
    scenario_from: Callable[[str], Scenario], body: str, where: str, line: int, says: str
) -> None:
    with pytest.raises(ScenarioError) as raised:
        scenario_from(HEAD + body)
    problems = [(p.field, p.line, p.message) for p in raised.value.problems]
    assert any(
        (field, at) == (where, HEAD.count("\n") + line) and says in message for field, at, message in problems
    ), problems


# -- slots on the virtual clock ------------------------------------------------------------------------


def test_a_tag_limit_of_one_keeps_two_task_runs_apart_and_the_second_waits_out_the_first(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: one slot\nflow: tests.flows:tagged_side_by_side\nparameters: {{url: {N}}}\n"
        + endpoint("{json: {n: 1}, latency: 4}")
        + "concurrency_limits:\n  tag: {db: 1}\n"
        "expect:\n  flow: Completed\n  result: [1, 1, 1]\n"
        "  slots:\n    db: {held_after: 0, waited: {min: 4, max: 10}}\n"
    )
    outcome = passing(harness_session, scenario)
    first, second = waits(outcome)
    assert first == 0.0  # the first asked and got it
    # the second asked again on the server's Retry-After until the first gave it back, 4 virtual seconds later
    assert 4.0 <= second <= 10.0
    assert outcome.wall_s < 5.0  # virtual: not slept
    assert harness_session.run(scenario).slots == outcome.slots  # the server's jitter is seeded too


def test_without_a_limit_the_tag_holds_nothing_and_nobody_waits(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: no limit\nflow: tests.flows:tagged_side_by_side\nparameters: {{url: {N}}}\n"
        + endpoint("{json: {n: 1}, latency: 4}")
        + "concurrency_limits:\n  tag: {other: 1}\n"
        "expect:\n  flow: Completed\n  slots:\n    other: {held_after: 0, waited: {max: 0}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert outcome.slots["other"].waited == ()
    assert outcome.waited_s == pytest.approx(4.0, abs=0.01)  # side by side: one latency, not two


def test_a_slot_held_through_retry_waits_is_renewed_on_the_virtual_clock(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The first task run holds the slot through two 100 s retry waits: its lease (60 s) lapses twice over
    unless the renewal thread renews it every 45 s of the lease clock, as Prefect's does in real time."""
    scenario = scenario_from(
        f"name: renewed\nflow: tests.flows:tagged_retries_side_by_side\nparameters: {{url: {N}}}\n"
        + endpoint("{status: 500, times: 2}", "{json: {n: 1}}")
        + "concurrency_limits:\n  tag: {db: 1}\n"
        "expect:\n  flow: Completed\n  slots:\n    db: {held_after: 0, waited: {min: 200}}\n"
        "  prefect_api:\n    calls: {POST /v2/concurrency_limits/decrement-with-lease: 2}\n"
    )
    outcome = passing(harness_session, scenario)
    renewals = outcome.api_counts.get("POST /v2/concurrency_limits/leases/*/renew", 0)
    # each holder renews once as it starts; the first then at 45, 90, 135 and 180 s of its 200 s
    assert renewals == 2 + 4, outcome.api_counts
    assert outcome.slots["db"].longest < 240


def test_a_slot_leaked_by_a_kill_is_freed_when_its_lease_lapses(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: leaked\nflow: tests.flows:tagged_side_by_side\nparameters: {{url: {N}, n: 1}}\n"
        + endpoint("{json: {n: 1}}")
        + "concurrency_limits:\n  tag: {db: 1}\ncrash: {at: {after_return: tagged_fetch}}\n"
        "expect:\n  flow_runs: [{flow: Running}, {flow: Completed, result: [1, 1]}]\n"
        "  slots:\n    db: {held_after: 0, waited: {min: 55, max: 90}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert outcome.runs[0].slots["db"].held_after == 1  # the killed run left its slot taken
    (waited,) = waits(outcome)
    assert 55 <= waited <= 60 + 30  # the lease's 60 s from when it was taken, to the next ask after it lapsed


def test_a_slot_leaked_by_a_kill_has_lapsed_when_the_run_comes_back_a_minute_later(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: lapsed meanwhile\nflow: tests.flows:tagged_side_by_side\nparameters: {{url: {N}, n: 1}}\n"
        + endpoint("{json: {n: 1}}")
        + "concurrency_limits:\n  tag: {db: 1}\ncrash: {at: {after_return: tagged_fetch}}\nrerun_after: 61\n"
        "expect:\n  flow_runs: [{flow: Running}, {flow: Completed}]\n"
        "  slots:\n    db: {held_after: 0, waited: {max: 0}}\n"
    )
    passing(harness_session, scenario)


def test_a_kill_with_no_run_after_it_leaves_the_slot_taken(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: left taken\nflow: tests.flows:tagged_side_by_side\nparameters: {{url: {N}, n: 1}}\n"
        + endpoint("{json: {n: 1}}")
        + "concurrency_limits:\n  tag: {db: 1}\ncrash: {at: {after_return: tagged_fetch}}\nreruns: 0\n"
        "expect:\n  slots:\n    db: {held_after: 1}\n"
    )
    passing(harness_session, scenario)
    failing = scenario_from(scenario.path.read_text().replace("held_after: 1", "held_after: 0"))
    (mismatch,) = check(failing, harness_session.run(failing))
    assert (mismatch.field, mismatch.expected, mismatch.observed) == ("expect.slots.db.held_after", 0, 1)


def test_a_global_limit_taken_in_the_tasks_own_code(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: warehouse\nflow: tests.flows:warehouse_loads\nparameters: {{url: {N}}}\n"
        + endpoint("{json: {n: 1}, latency: 3}")
        + "concurrency_limits:\n  global: {warehouse: 1}\n"
        "expect:\n  flow: Completed\n  result: [1, 1, 1]\n"
        "  slots:\n    warehouse: {held_after: 0, waited: {min: 3}}\n"
    )
    outcome = passing(harness_session, scenario)
    assert [task for task, _ in outcome.slots["warehouse"].waited] == ["warehouse_load", "warehouse_load"]


def test_async_task_runs_share_a_slot_too(harness_session: Session, scenario_from: Callable[[str], Scenario]) -> None:
    scenario = scenario_from(
        f"name: async\nflow: tests.flows:tagged_async_side_by_side\nparameters: {{url: {N}}}\n"
        + endpoint("{json: {n: 1}, latency: 2}")
        + "concurrency_limits:\n  tag: {db: 1}\n"
        "expect:\n  flow: Completed\n  slots:\n    db: {held_after: 0, waited: {min: 2, max: 10}}\n"
    )
    passing(harness_session, scenario)


def test_a_strategy_puts_the_tag_on_a_task(harness_session: Session, scenario_from: Callable[[str], Scenario]) -> None:
    """``tags:`` adds a tag to the task's own: the built-in flows carry none."""
    scenario = scenario_from(
        f"name: tagged by a strategy\nflow: tests.flows:mapped_fetch\nparameters: {{urls: [{N}, {N}]}}\n"
        + endpoint("{json: {n: 1}, latency: 2}")
        + "concurrency_limits:\n  tag: {api: 1}\n"
        "expect:\n  flow: Completed\n  slots:\n    api: {waited: {max: 0}}\n"
        "strategies:\n  one_at_a_time:\n    tags: [api]\n"
        "    expect:\n      flow: Completed\n      slots:\n        api: {held_after: 0, waited: {min: 2}}\n"
    )
    for _, case, policy in scenario.cases():
        outcome = harness_session.run(case, policy=policy)
        assert check(case, outcome) == []


# -- a guest in the user's process and server ----------------------------------------------------------


def test_the_limits_are_gone_after_the_scenario_and_prefects_cache_is_put_back(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    from prefect.concurrency import services

    cache = services._no_limits_cache
    scenario = scenario_from(
        f"name: tidy\nflow: tests.flows:tagged_side_by_side\nparameters: {{url: {N}}}\n"
        + endpoint("{json: {n: 1}}")
        + "concurrency_limits:\n  tag: {db: 1}\n  global: {warehouse: 2}\n"
    )
    harness_session.run(scenario)
    assert services._no_limits_cache is cache
    with harness_session.api() as client:
        assert client.read_global_concurrency_limits(limit=100) == []
        assert client.read_concurrency_limits(limit=100, offset=0) == []


def test_the_lease_clock_only_moves_forward(harness_session: Session) -> None:
    assert harness_session.server is not None
    clock = LeaseClock(harness_session.server.api_url)
    now = clock.post()
    assert clock.post(now + 5) == now + 5
    assert clock.post(now) == now + 5  # never back


def test_task_runs_under_a_subflow_share_a_slot_and_nobody_stalls(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: subflow\nflow: tests.flows:tagged_in_a_subflow\nparameters: {{url: {N}}}\n"
        + endpoint("{json: {n: 1}, latency: 4}")
        + "concurrency_limits:\n  tag: {db: 1}\n"
        "expect:\n  flow: Completed\n  result: [1, 1, 1]\n  slots:\n    db: {held_after: 0, waited: {min: 4}}\n"
    )
    outcome = passing(harness_session, scenario)
    # the parent flow run is blocked in its subflow call: no barrier waits out its bound (5 s of real time)
    assert outcome.wall_s < 4.0, outcome.wall_s


def test_a_timeout_on_taking_a_slot_counts_virtual_seconds(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    slow = "https://api.example.test/slow"
    scenario = scenario_from(
        f"name: impatient\nflow: tests.flows:warehouse_held_long\nparameters: {{url: {N}, slow: {slow}}}\n"
        + endpoint("{json: {n: 1}, latency: 1}")
        + f"  - request: GET {slow}\n    responses: [{{json: {{n: 2}}, latency: 30}}]\n"
        "concurrency_limits:\n  global: {warehouse: 1}\n"
        "expect:\n  flow: Completed\n  result: [2, AcquireConcurrencySlotTimeoutError]\n"
        "  slots:\n    warehouse: {held_after: 0, waited: {min: 10, max: 10}}\n"
    )
    passing(harness_session, scenario)


def test_a_flow_timeout_fires_while_a_task_run_waits_for_a_slot(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        f"name: timed out waiting\nflow: tests.flows:tagged_within_20_s\nparameters: {{url: {N}}}\n"
        + endpoint("{json: {n: 1}}")
        + "concurrency_limits:\n  tag: {db: 1}\ncrash: {at: {after_return: tagged_fetch}}\n"
        "expect:\n  flow_runs: [{flow: Running}, {flow: TimedOut}]\n"
    )
    outcome = passing(harness_session, scenario)
    assert 20 <= outcome.runs[1].virtual_s < 25


def test_a_killed_holder_renewed_its_lease_until_it_died(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Killed 200 s into holding its slot (two 100 s retry waits), its last renewal was at 180 s: the lease
    lapses at 240 s, 40 s after the kill, not 60 s after the slot was taken."""
    scenario = scenario_from(
        f"name: renewed until killed\nflow: tests.flows:one_tagged_retried_fetch\nparameters: {{url: {N}}}\n"
        + endpoint("{status: 500, times: 2}", "{json: {n: 1}}")
        + "concurrency_limits:\n  tag: {db: 1}\ncrash: {at: {after_return: tagged_retried_fetch}}\n"
        "expect:\n  flow_runs: [{flow: Running}, {flow: Completed}]\n"
        "  slots:\n    db: {held_after: 0, waited: {min: 40, max: 45}}\n"
    )
    passing(harness_session, scenario)


def test_limits_made_before_one_that_fails_are_deleted_all_the_same(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    from harness.run.slots import declared

    assert harness_session.server is not None
    scenario = scenario_from(
        f"name: half made\nflow: tests.flows:tagged_side_by_side\nparameters: {{url: {N}}}\n"
        + endpoint("{json: {n: 1}}")
        + "concurrency_limits:\n  tag: {db: 1}\n  global: {warehouse: 1}\n"
    )
    with harness_session.api() as client:  # a limit of that name is there already: making it fails
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="warehouse", limit=1))
    try:
        from prefect.exceptions import ObjectAlreadyExists

        with (
            pytest.raises(ObjectAlreadyExists),
            declared(scenario, harness_session.api, harness_session.server.api_url),
        ):
            pass  # pragma: no cover (never reached)
        with harness_session.api() as client:
            assert client.read_concurrency_limits(limit=100, offset=0) == []  # db was made, then deleted
    finally:
        with harness_session.api() as client:
            client.delete_global_concurrency_limit_by_name(name="warehouse")
