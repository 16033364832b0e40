"""The virtual clock against real time: the one test allowed to sleep (about a second in all)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import Outcome, Scenario, Session
from harness.run.clock import Clock

TOLERANCE_S = 0.1  # run-to-run difference in the engine's own overhead on a loaded 2-core machine

SMALL_DELAYS = [
    """
name: task retry delay of 0.2 s
flow: tests.flows:delayed_ping
parameters: {url: "https://api.example.test/ping"}
endpoints:
  - request: GET https://api.example.test/ping
    responses: [{status: 503}, {status: 204}]
""",
    """
name: latency of 0.3 s then a retry
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses:
      - {status: 500, latency: 0.3}
      - {json: {stargazers_count: 3}, latency: 0.1}
""",
    """
name: task timeout decided on the clock
flow: tests.flows:quick_deadline
endpoints:
  - request: GET https://api.example.test/slow
    responses:
      - {status: 200, latency: 0.3}
      - {status: 200}
""",
]


def observed(outcome: Outcome) -> tuple[object, ...]:
    return (
        outcome.flow.name,
        [(t.name, t.state.name, t.retries) for t in outcome.tasks],
        outcome.counts,
        [c.served for c in outcome.calls],
    )


@pytest.mark.parametrize("text", SMALL_DELAYS, ids=lambda t: t.split("name: ")[1].splitlines()[0])
def test_virtual_and_real_time_agree(
    harness_session: Session, scenario_from: Callable[[str], Scenario], text: str
) -> None:
    """Same states, retries and calls in both modes; real wall time covers the virtual time."""
    scenario = scenario_from(text)
    harness_session.run(scenario)  # warm-up: a first run pays one-off imports and connections
    # The least loaded of three virtual runs: the engine's overhead varies with the machine's load.
    virtual = min((harness_session.run(scenario) for _ in range(3)), key=lambda o: o.virtual_s)
    real = harness_session.run(scenario, real_time=True)
    assert observed(virtual) == observed(real)
    skipped = virtual.virtual_s - virtual.wall_s
    assert skipped >= 0.09  # something was skipped, not slept
    assert real.wall_s >= skipped  # what the virtual run skipped, the real run slept
    assert real.wall_s >= virtual.virtual_s - TOLERANCE_S
    assert real.virtual_s == pytest.approx(real.wall_s, abs=0.01)  # real mode skips nothing


def test_clock_reads_wall_time_plus_skipped_sleeps() -> None:
    """``now`` is wall time since the start plus every skipped sleep."""
    clock = Clock()
    clock.sleep(100)
    clock.sleep(-1)
    assert 100 <= clock.now() < 101
    assert clock.skipped == 100
