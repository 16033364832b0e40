"""The one path every shell takes: load → run → check."""

from __future__ import annotations

from harness.expectations import check
from harness.model import Scenario
from harness.report import Result
from harness.runner import Session


def run_scenario(session: Session, scenario: Scenario) -> Result:
    """Run ``scenario`` once and judge it; harness errors become an ERROR verdict."""
    outcome = session.run(scenario)
    return Result.of(scenario, outcome, check(scenario, outcome))
