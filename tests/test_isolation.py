"""Scenarios of one session are isolated, and Prefect's races are pinned, so outcomes repeat exactly."""

from __future__ import annotations

from collections.abc import Callable

from harness import Scenario, Session, check

COUNT = "https://api.example.test/count"


def test_a_task_cache_does_not_leak_into_the_next_scenario(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A cached task that completed in one scenario is not served from that cache in the next one."""
    healthy = scenario_from(f"""
name: cached, healthy
flow: tests.flows:cached_flow
endpoints:
  - request: GET {COUNT}
    responses: [{{json: {{count: 3}}}}]
expect:
  flow: Completed
  result: 3
  calls: {{GET {COUNT}: 1}}
""")
    down = scenario_from(f"""
name: cached, down
flow: tests.flows:cached_flow
endpoints:
  - request: GET {COUNT}
    responses: [{{status: 500}}]
expect:
  flow: Failed
  tasks:
    cached_count: {{state: Failed, retries: 2}}
  calls: {{GET {COUNT}: 3}}
""")
    for scenario in (healthy, down, healthy):
        assert check(scenario, harness_session.run(scenario)) == []
