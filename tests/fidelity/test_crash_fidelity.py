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

from pathlib import Path
from typing import Any

import pytest

from harness import Outcome, Session
from tests.fidelity.crash_cases import CRASH_CASES
from tests.fidelity.hook_log import counted
from tests.fidelity.references import References
from tests.fidelity.test_fidelity import Reference, jsonable, report, scenario_of

pytestmark = pytest.mark.fidelity

KEYS = ("runs", "reruns_tasks", "calls", "hooks", "sqlite", "result", "slots")


@pytest.fixture(scope="module")
def crash_reference(references: References) -> Reference:
    """Every case through the reference: its recording, or one live run shared by the session's workers."""
    return Reference(references, "tests.fidelity.crash_reference")


def observed(outcome: Outcome, crashed: bool) -> dict[str, Any]:
    """The harness's history in the reference's terms."""
    runs = outcome.runs or (outcome,)  # a case of one flow run, not killed, is no history
    return {
        "runs": [{"flow": r.flow.name, "flow_type": r.flow.type} for r in runs],
        "reruns_tasks": [
            sorted([t.name, t.state.name, t.run_count] for t in r.tasks) for r in (runs[1:] if crashed else runs)
        ],
        "calls": dict(outcome.counts),
        "hooks": counted(list(outcome.hooks)),
        "sqlite": jsonable(outcome.sqlite),
        "result": jsonable(outcome.result),
        "slots": {name: s.held_after for name, s in outcome.slots.items()},
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
    assert not keys, report(spec["name"], harness, ref, keys, compared=KEYS)
