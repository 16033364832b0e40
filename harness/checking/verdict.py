"""The verdict of one scenario run, and the one path the shells take to it: run, then check.

``run_scenario`` is what ``harness run`` and each pytest scenario item do for
one scenario (under one strategy, if any): run it on the session, compute
the fault-free baseline when a data invariant needs it, check every
expectation, and return a ``Result``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from harness._errors import shown
from harness.checking.baseline import baseline_rows, judges_data
from harness.checking.expectations import Mismatch, check
from harness.run.outcome import Outcome
from harness.run.session import Session
from harness.scenario.model import Scenario
from harness.scenario.strategy import Policy


def run_scenario(
    session: Session, scenario: Scenario, policy: Policy | None = None, label: str | None = None
) -> Result:
    """Run ``scenario`` once (under ``policy``, if given) and judge it; one for another Prefect is skipped."""
    reason = scenario.skipped()
    if reason is not None:
        return dataclasses.replace(Result.of(scenario, None, [], label=label), skipped=reason)
    outcome = session.run(scenario, policy=policy)
    baseline = baseline_rows(session, scenario, policy) if judges_data(scenario) else None
    return Result.of(scenario, outcome, check(scenario, outcome, baseline=baseline), label=label)


@dataclass(frozen=True, slots=True)
class Result:
    """One scenario's verdict: passed, or failed with mismatches or an error."""

    name: str
    file: str
    line: int
    outcome: Outcome | None = None
    mismatches: tuple[Mismatch, ...] = ()
    error: str | None = None
    xfail: str | None = None
    failures: tuple[str, ...] = field(default=())
    skipped: str | None = None  # why it was not run: its expectations are for another Prefect

    @property
    def failed_expectations(self) -> bool:
        return bool(self.mismatches or self.error)

    @property
    def passed(self) -> bool:
        """True when the verdict is what the scenario asks for (an ``xfail`` scenario must fail). A skipped one
        (its expectations are for another Prefect) is True too, as it fails nothing; ``harness run`` counts it
        apart in its summary and the JSON marks it ``"verdict": "skip"``."""
        if self.skipped is not None:
            return True
        if self.xfail is not None:
            return bool(self.mismatches) and self.error is None
        return not self.failed_expectations

    @property
    def verdict(self) -> str:
        if self.skipped is not None:
            return "skip"
        if self.xfail is not None:
            return "xfail" if self.passed else ("XPASS" if not self.failed_expectations else "ERROR")
        if self.error:
            return "ERROR"
        return "pass" if self.passed else "FAIL"

    @classmethod
    def of(
        cls,
        scenario: Scenario,
        outcome: Outcome | None,
        mismatches: list[Mismatch],
        error: str | None = None,
        label: str | None = None,
    ) -> Result:
        failures = tuple(f"{shown(scenario.path)}:{m.line}: {m}" for m in mismatches) + ((error,) if error else ())
        return cls(
            label or scenario.name,
            shown(scenario.path),
            scenario.line,
            outcome,
            tuple(mismatches),
            error,
            scenario.xfail,
            failures,
        )
