"""The API oracle: each case of ``api_cases`` through the harness and through plain Prefect behind a proxy.

The reference (``tests.fidelity.api_reference``) runs every case's flow in a
fresh process whose Prefect API is a plain faulting proxy of its own; the
harness runs the case as a scenario with ``prefect_api``, ``events`` and
``cancel``. They must agree on how the flow's call ended (its state, or what
it raised), the states the server recorded for the flow run and its tasks,
the flow runs left unfinished on the server, the requests per route of
Prefect's API client, and the hooks that ran.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness import Outcome, Session
from tests.fidelity.api_cases import API_CASES
from tests.fidelity.hook_log import counted
from tests.fidelity.references import References
from tests.fidelity.test_fidelity import Reference, report, scenario_of

pytestmark = pytest.mark.fidelity

KEYS = ("flow", "server_flow", "server_tasks", "orphans", "api", "hooks")
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def api_reference(references: References) -> Reference:
    """Every case through the reference: its recording, or one live run shared by the session's workers."""
    return Reference(references, "tests.fidelity.api_reference")


def observed(outcome: Outcome, spec: dict[str, Any]) -> dict[str, Any]:
    """The harness's outcome in the reference's terms."""
    view = outcome.server
    raised = outcome.raised
    if raised is not None:
        raised = ID.sub("ID", re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1", raised))[:80]
    return {
        "flow": outcome.flow.name if raised is None else f"raised {raised}",
        "server_flow": view.flow.name if view is not None and view.flow is not None else None,
        "server_tasks": {name: s.name for name, s in view.tasks.items()} if view is not None else {},
        "orphans": len(view.orphans) if view is not None else 0,
        "api": {} if spec.get("unreachable") else dict(sorted(outcome.api_counts.items())),
        "hooks": counted(list(outcome.hooks)),
    }


@pytest.mark.parametrize("spec", API_CASES, ids=[c["name"] for c in API_CASES])
def test_harness_agrees_with_prefect_behind_a_faulty_api(
    spec: dict[str, Any], harness_session: Session, api_reference: Reference, tmp_path: Path
) -> None:
    document = {**spec, "expect": {"server": {}}}  # the server's view is read back
    document.pop("unreachable", None)
    scenario = scenario_of(document, tmp_path)
    policy = scenario.strategies["variant"].policy if "strategy" in spec else None
    harness = observed(harness_session.run(scenario, policy=policy), spec)
    ref = api_reference.results()[spec["name"]]
    if ref["error"]:
        pytest.fail(f"the API reference could not run case {spec['name']!r}:\n{ref['error']}")
    keys = [k for k in KEYS if harness[k] != ref[k]]
    assert not keys, report(spec["name"], harness, ref, keys, compared=KEYS)
