"""The one path every shell takes: load → run → check."""

from __future__ import annotations

from harness.expectations import check
from harness.model import Scenario
from harness.policies import Policy
from harness.report import Result
from harness.runner import Session


def run_scenario(
    session: Session, scenario: Scenario, policy: Policy | None = None, label: str | None = None
) -> Result:
    """Run ``scenario`` once (under ``policy``, if given) and judge it."""
    outcome = session.run(scenario, policy=policy)
    return Result.of(scenario, outcome, check(scenario, outcome), label=label)
