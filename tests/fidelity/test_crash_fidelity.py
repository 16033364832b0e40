"""The crash oracle: each crash case through the harness and through plain Prefect runs killed by hand.

The reference (``tests.fidelity.crash_reference``) runs every flow run of a
case in a process of its own against ``prefect_test_harness()``, the first
killed at the case's point by the flow's own code; the harness runs the case
as a scenario with ``crash:`` and ``reruns``. They must agree on every flow
run's final state (as the server keeps it), the task runs of every run that
was not killed, the calls over the history, the hooks that ran, the rows
stored and the last run's result. The killed run's task states are not
compared: what reaches the server before a SIGKILL is a race in Prefect
itself (its events are sent in the background).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Outcome, Scenario, ScenarioError, Session, load_file
from tests.fidelity.crash_cases import CRASH_CASES
from tests.fidelity.hook_log import counted
from tests.fidelity.test_fidelity import Reference

pytestmark = pytest.mark.fidelity

KEYS = ("runs", "reruns_tasks", "calls", "hooks", "sqlite", "result")


@pytest.fixture(scope="module")
def crash_reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every crash case through the crash reference, in one subprocess started when the first test sets up."""
    ref = Reference(tmp_path_factory.mktemp("crash-fidelity") / "reference.json", "tests.fidelity.crash_reference")
    yield ref
    ref.stop()


def scenario_of(spec: dict[str, Any], folder: Path) -> Scenario:
    """The case as a scenario document, loaded as users load theirs (its ``strategy`` as strategy ``variant``)."""
    keys = ("name", "flow", "parameters", "endpoints", "crash", "reruns", "rerun_after")
    document = {k: spec[k] for k in keys if k in spec}
    if "strategy" in spec:
        document["strategies"] = {"variant": spec["strategy"]}
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    (loaded,) = load_file(path)
    if isinstance(loaded, ScenarioError):
        raise loaded
    return loaded


def observed(outcome: Outcome, crashed: bool) -> dict[str, Any]:
    """The harness's history in the reference's terms."""
    runs = outcome.runs
    return {
        "runs": [{"flow": r.flow.name, "flow_type": r.flow.type} for r in runs],
        "reruns_tasks": [
            sorted([t.name, t.state.name, t.run_count] for t in r.tasks) for r in (runs[1:] if crashed else runs)
        ],
        "calls": dict(outcome.counts),
        "hooks": counted(list(outcome.hooks)),
        "sqlite": json.loads(json.dumps(outcome.sqlite)),
        "result": json.loads(json.dumps(outcome.result, default=repr)),
    }


@pytest.mark.parametrize("spec", CRASH_CASES, ids=[c["name"] for c in CRASH_CASES])
def test_harness_agrees_with_prefect_across_a_crash(
    spec: dict[str, Any], harness_session: Session, crash_reference: Reference, tmp_path: Path
) -> None:
    scenario = scenario_of(spec, tmp_path)
    policy = scenario.strategies["variant"].policy if "strategy" in spec else None
    harness = observed(harness_session.run(scenario, policy=policy), "crash" in spec)
    ref = crash_reference.results()[spec["name"]]
    if ref["error"]:
        pytest.fail(f"the crash reference could not run case {spec['name']!r}:\n{ref['error']}")
    keys = [k for k in KEYS if harness[k] != ref[k]]
    assert not keys, f"harness and Prefect disagree on {', '.join(keys)} in case {spec['name']!r}:\n" + "\n".join(
        f"  {k:12} {'!=' if k in keys else '=='} harness:   {json.dumps(harness[k], sort_keys=True)}\n"
        f"  {'':12}    reference: {json.dumps(ref[k], sort_keys=True)}"
        for k in KEYS
    )
