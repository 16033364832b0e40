"""The library gives the same results in any order and on every run: nothing is flaky."""

from __future__ import annotations

import random
from typing import Any

import pytest

from harness import Outcome, Scenario, Session
from harness.policies import Policy
from tests.test_library import CASES


def _per_endpoint(outcome: Outcome) -> list[Any]:
    """The call log ordered by endpoint, each endpoint's calls in the order they came (a stable sort)."""
    return sorted(outcome.calls, key=lambda c: c.endpoint or "")


def summary(outcome: Outcome) -> tuple[object, ...]:
    """Everything a scenario asserts on, and the full call log, wall-clock fields aside."""
    return (
        outcome.flow.name,
        outcome.flow.type,
        tuple(
            (t.name, t.state.name, t.run_count, t.history, tuple(round(d, 2) for d in t.delays)) for t in outcome.tasks
        ),
        tuple(sorted(outcome.counts.items())),
        # per endpoint, in order (concurrent task runs calling different endpoints interleave as threads go)
        tuple((c.endpoint, c.url, c.served) for c in _per_endpoint(outcome)),
        repr(outcome.result),
        outcome.sqlite,
        round(outcome.waited_s, 1),
    )


Case = tuple[str, Scenario, Policy | None]


def run_all(session: Session, cases: list[Case]) -> dict[str, tuple[object, ...]]:
    return {label: summary(session.run(s, policy=policy)) for label, s, policy in cases}


@pytest.mark.slow
def test_shuffled_and_repeated_runs_of_the_library_agree(harness_session: Session) -> None:
    """The whole library, strategy variants included, in order, then shuffled: every outcome is identical."""
    in_order = run_all(harness_session, CASES)
    shuffled = list(CASES)
    random.Random(20261126).shuffle(shuffled)
    assert [label for label, _, _ in shuffled] != [label for label, _, _ in CASES]
    again = run_all(harness_session, shuffled)
    differing = {name for name in in_order if in_order[name] != again[name]}
    assert not differing, {name: (in_order[name], again[name]) for name in differing}
