"""The public surface of ``harness``."""

from __future__ import annotations

import harness


def test_all_is_sorted_and_pinned() -> None:
    """``__all__`` is sorted and lists exactly the public names users rely on."""
    assert harness.__all__ == sorted(harness.__all__)
    assert set(harness.__all__) == {
        "HarnessError",
        "Mismatch",
        "Outcome",
        "Problem",
        "Result",
        "Scenario",
        "ScenarioError",
        "ScenarioFailure",
        "ScenarioTimeout",
        "ServerError",
        "Session",
        "StateInfo",
        "TaskRun",
        "UntestedPrefect",
        "check",
        "load_file",
        "load_paths",
        "resolve_flow",
        "run_scenario",
    }
    for name in harness.__all__:
        assert getattr(harness, name) is not None


def test_failures_are_assertion_errors() -> None:
    """A scenario that fails its expectations is a test failure, not an error."""
    assert issubclass(harness.ScenarioFailure, AssertionError)
    assert issubclass(harness.ScenarioFailure, harness.HarnessError)
    assert issubclass(harness.ScenarioError, harness.HarnessError)
