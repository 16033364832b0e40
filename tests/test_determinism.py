"""The library gives the same results in any order and on every run: nothing is flaky."""

from __future__ import annotations

import random

from harness import Outcome, Scenario, Session
from tests.test_library import SCENARIOS


def summary(outcome: Outcome) -> tuple[object, ...]:
    """Everything a scenario asserts on, and the full call log, wall-clock fields aside."""
    return (
        outcome.flow.name,
        outcome.flow.type,
        tuple(
            (t.name, t.state.name, t.run_count, t.history, tuple(round(d, 2) for d in t.delays)) for t in outcome.tasks
        ),
        tuple(sorted(outcome.counts.items())),
        tuple((c.endpoint, c.url, c.served) for c in outcome.calls),
        repr(outcome.result),
        outcome.sqlite,
        round(outcome.waited_s, 1),
    )


def run_all(session: Session, scenarios: list[Scenario]) -> dict[str, tuple[object, ...]]:
    return {s.name: summary(session.run(s)) for s in scenarios}


def test_shuffled_and_repeated_runs_of_the_library_agree(harness_session: Session) -> None:
    """The whole library in order, then shuffled: every scenario's outcome is identical."""
    in_order = run_all(harness_session, SCENARIOS)
    shuffled = list(SCENARIOS)
    random.Random(20261126).shuffle(shuffled)
    assert [s.name for s in shuffled] != [s.name for s in SCENARIOS]
    again = run_all(harness_session, shuffled)
    differing = {name for name in in_order if in_order[name] != again[name]}
    assert not differing, {name: (in_order[name], again[name]) for name in differing}
