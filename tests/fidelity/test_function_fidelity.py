"""The function-fault oracle: each case through the harness (``functions:`` faults the call) and through plain
Prefect with the real call made to fail by hand (``tests.fidelity.function_reference``). They must agree on
the flow's state, each task run's state, run count and message, and the rows stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import Session
from tests.fidelity.function_cases import FUNCTION_CASES
from tests.fidelity.references import References
from tests.fidelity.test_fidelity import Reference, jsonable, report, scenario_of

pytestmark = pytest.mark.fidelity

KEYS = ("flow", "tasks", "rows")


@pytest.fixture(scope="module")
def function_reference(references: References) -> Reference:
    """Every case through the reference: its recording, or one live run shared by the session's workers."""
    return Reference(references, "tests.fidelity.function_reference")


@pytest.mark.parametrize("spec", FUNCTION_CASES, ids=[c["name"] for c in FUNCTION_CASES])
def test_harness_agrees_with_prefect_when_a_call_fails(
    spec: dict[str, Any], harness_session: Session, function_reference: Reference, tmp_path: Path
) -> None:
    outcome = harness_session.run(scenario_of(spec, tmp_path))
    harness = {
        "flow": outcome.flow.name,
        "tasks": sorted([t.name, t.state.name, t.run_count, t.state.message or ""] for t in outcome.tasks),
        "rows": jsonable(outcome.sqlite),
    }
    ref = function_reference.results()[spec["name"]]
    if ref["error"]:
        pytest.fail(f"the function reference could not run case {spec['name']!r}:\n{ref['error']}")
    keys = [k for k in KEYS if harness[k] != ref[k]]
    assert not keys, report(spec["name"], harness, ref, keys, compared=KEYS)
