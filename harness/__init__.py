"""Fault-injection test harness for Prefect flows.

Declare in YAML what an API does to a flow, run the flow on Prefect's real
engine against mocked endpoints, and assert its final states, retries and calls.
"""

from __future__ import annotations

from harness._errors import (
    HarnessError,
    Problem,
    ScenarioError,
    ScenarioFailure,
    ScenarioTimeout,
    ServerError,
    UntestedPrefect,
)
from harness.checking.expectations import Mismatch, check
from harness.checking.verdict import Result, run_scenario
from harness.run.outcome import Outcome, StateInfo, TaskRun
from harness.run.session import Session
from harness.scenario.loader import load_file, load_paths
from harness.scenario.model import Scenario
from harness.scenario.resolve import resolve_flow

__all__ = [
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
]
