"""Properties of flows under generated fault schedules, on Prefect's real engine.

Each example is a real flow run (about 0.1 s), so example counts stay small;
the ``ci`` profile (conftest.py) makes them reproducible.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from harness import Scenario, Session, load_file
from harness import generators as gen
from harness.checking.baseline import baseline_rows
from harness.checking.expectations import violation
from harness.scenario.model import Invariant, Step

# Prefect's background threads may draw from the global `random` while Hypothesis draws an example.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

URL = "https://api.example.test/status"
STARS = "https://api.github.com/repos/octo/{}"
CFPB_URL = "https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/"
CFPB_BODY = Path(__file__).parent.parent / "harness" / "fixtures" / "cfpb" / "search_size10_debt_recovery.json"


@given(gen.faulty_steps())
def test_generated_steps_are_steps(step: dict[str, Any]) -> None:
    """Every generated step is YAML-ready and validates as exactly one kind of faulty step."""
    parsed = Step.model_validate(step)
    kinds = [k for k in ("fault", "malformed") if step.get(k)] or ["status"]
    assert len(kinds) == 1 and parsed.has(kinds[0])
    assert yaml.safe_load(yaml.safe_dump(step)) == step


@given(gen.schedules(), gen.schedules())
def test_generated_schedules_load_from_a_scenario_file(first: list[Any], second: list[Any]) -> None:
    """Schedules written into a YAML scenario load through the loader, every step in place."""
    document = {
        "name": "generated",
        "flow": "github_stars",
        "parameters": {"repos": ["octo/a", "octo/b"]},
        "endpoints": [
            {"request": f"GET {STARS.format(repo)}", "responses": [*faults, {"json": {"stargazers_count": 1}}]}
            for repo, faults in (("a", first), ("b", second))
        ],
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        (scenario,) = load_file(path)
    assert isinstance(scenario, Scenario)
    assert [len(e.responses) for e in scenario.endpoints] == [len(first) + 1, len(second) + 1]


@settings(max_examples=20)
@given(retries=st.integers(0, 3), faults=gen.schedules(gen.transient_steps(), max_faults=5))
def test_k_transient_faults_against_r_retries(harness_session: Session, retries: int, faults: list[Any]) -> None:
    """k transient faults then success: Completed with k retries when k <= r, else Failed after r + 1 calls."""
    scenario = Scenario.model_validate(
        {
            "name": "k faults, r retries",
            "flow": "tests.flows:fetch_with_retries",
            "parameters": {"url": URL, "retries": retries},
            "endpoints": [{"request": f"GET {URL}", "responses": [*faults, {"status": 200}]}],
        }
    )
    outcome = harness_session.run(scenario)
    k = len(faults)
    (task,) = outcome.tasks
    if k <= retries:
        assert (outcome.flow.name, task.retries, outcome.counts[f"GET {URL}"]) == ("Completed", k, k + 1)
    else:
        assert (outcome.flow.name, task.retries, outcome.counts[f"GET {URL}"]) == ("Failed", retries, retries + 1)


@settings(max_examples=15)
@given(
    gen.scenarios(
        "github_stars",
        {f"GET {STARS.format(r)}": {"json": {"stargazers_count": 7}} for r in ("a", "b")},
        parameters={"repos": ["octo/a", "octo/b"]},
        max_faults=5,
    )
)
def test_github_stars_survives_three_faults_per_repository_not_four(
    harness_session: Session, scenario: Scenario
) -> None:
    """get_stars(retries=3): any faulty answer fails an attempt, so the flow completes iff no repo sees four."""
    outcome = harness_session.run(scenario)
    faults = [len(e.responses) - 1 for e in scenario.endpoints]
    event(f"most faults on one repository: {max(faults)}")
    assert (outcome.flow.name == "Completed") == (faults[0] <= 3 and faults[1] <= 3)
    if faults[0] > 3:  # the flow stops at the first repository it cannot read
        assert list(outcome.counts.values()) == [4, 0]


def _cfpb_healthy(size: int) -> dict[str, Step]:
    """The CFPB search answering its first ``size`` real hits (read without importing Prefect at collection)."""
    body = json.loads(CFPB_BODY.read_text())
    body["hits"]["hits"] = body["hits"]["hits"][:size]
    return {f"GET {CFPB_URL}?size={size}": Step.model_validate({"json": body})}


@settings(max_examples=15)
@given(
    gen.scenarios(
        "cfpb_etl",
        _cfpb_healthy(3),
        parameters={"size": 3},
        expect={"invariants": ["no_data_loss", "no_duplicates"]},
        max_faults=3,
    )
)
def test_cfpb_etl_never_completes_with_rows_missing_or_duplicated(harness_session: Session, scenario: Scenario) -> None:
    """Whatever the API does, a Completed ETL run stored exactly the rows a fault-free run stores."""
    outcome = harness_session.run(scenario)
    event(f"flow {outcome.flow.name}")
    baseline = baseline_rows(harness_session, scenario)
    assert baseline == 3
    if outcome.flow.name == "Completed":
        assert violation(Invariant(kind="no_data_loss"), outcome, baseline) is None
        assert violation(Invariant(kind="no_duplicates"), outcome, baseline) is None
    else:
        assert violation(Invariant(kind="no_data_loss"), outcome, baseline) == (
            "3 of the 3 row(s) a fault-free run stores are missing"
        )
