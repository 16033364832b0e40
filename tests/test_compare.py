"""Comparing strategies: scenario x strategy x seed cells, their numbers, and the reports made of them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import Scenario, Session
from harness.checking.baseline import fault_free
from harness.compare import Cell, compare, is_random, p95, plan, wasted_calls, wilson
from harness.policies import PRESETS
from harness.report.comparison import compare_json, compare_markdown, compare_table

REPO = "https://api.github.com/repos/octo/cat"
CFPB = "https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/"

GONE = f"""
name: gone
flow: github_stars
parameters: {{repos: [octo/cat]}}
endpoints:
  - request: GET {REPO}
    responses: [{{status: 404, json: {{message: Not Found}}}}]
"""

CHAOS = """
name: chaos
flow: github_stars
parameters: {repos: [octo/cat, octo/dog]}
endpoints:
  - request: GET https://api.github.com/repos/*
    chaos:
      rate: 0.4
      faults: [{status: 503}, {fault: read_timeout}, {status: 429, headers: {retry-after: "30"}}]
      otherwise: {json: {stargazers_count: 5}}
"""

HITS = "{hits: {total: {value: 2, relation: eq}, hits: [{_source: {state: TN}}, {_source: {state: AL}}]}}"
ETL = f"""
name: etl
flow: cfpb_etl
parameters: {{size: 2}}
endpoints:
  - request: GET {CFPB}
    responses:
      - {{status: 500, text: Internal Server Error}}
      - {{json: {HITS}}}
expect:
  sqlite: {{path: cfpbcomplaints.db, query: SELECT COUNT(*) FROM complaint, equals: 2}}
"""


# -- the numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "interval"),
    [
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (5, 10, (0.2366, 0.7634)),
        (1, 1, (0.2065, 1.0)),
        (18, 20, (0.6990, 0.9721)),
        (0, 0, (0.0, 1.0)),
    ],
    ids=["0/10", "10/10", "5/10", "1/1", "18/20", "no-runs"],
)
def test_wilson_interval_known_values(successes: int, n: int, interval: tuple[float, float]) -> None:
    """The 95% Wilson score interval, against published values."""
    lo, hi = wilson(successes, n)
    assert (round(lo, 4), round(hi, 4)) == interval


def test_wilson_is_symmetric_and_contains_the_rate() -> None:
    """k/n and (n-k)/n mirror each other, and the interval holds the observed rate."""
    for n in (1, 7, 20):
        for k in range(n + 1):
            lo, hi = wilson(k, n)
            assert lo <= k / n <= hi
            mlo, mhi = wilson(n - k, n)
            assert math.isclose(lo, 1 - mhi, abs_tol=1e-12) and math.isclose(hi, 1 - mlo, abs_tol=1e-12)


def test_p95_by_nearest_rank() -> None:
    """The 95th percentile is a value that occurred: the 19th of 20, the only one of one."""
    assert p95([float(v) for v in range(20, 0, -1)]) == 19
    assert p95([3.0]) == 3
    assert p95([1.0, 1.0, 1.0, 10.0]) == 10


def test_only_random_scenarios_run_every_seed(scenario_from: Callable[[str], Scenario]) -> None:
    """Chaos and random latency make a scenario random; scripted ones (fixed latency too) run once."""
    chaos, gone = scenario_from(CHAOS), scenario_from(GONE)
    jittery = scenario_from(GONE.replace("Not Found}}", "Not Found}}, latency: {uniform: [0, 2]}"))
    fixed = scenario_from(GONE.replace("Not Found}}", "Not Found}}, latency: 2"))
    assert [is_random(s) for s in (chaos, gone, jittery, fixed)] == [True, False, True, False]
    assert [seeds for _, seeds in plan([chaos, gone], 4)] == [[0, 1, 2, 3], [0]]


def test_fault_free_serves_the_healthy_answer(scenario_from: Callable[[str], Scenario]) -> None:
    """The baseline run serves chaos' ``otherwise``, or the last plain 2xx answer, even when a fault comes last."""
    etl = scenario_from(ETL.replace("{json: " + HITS + "}", "{json: " + HITS + "}\n      - {fault: read_timeout}"))
    (endpoint,) = fault_free(etl).endpoints
    (step,) = endpoint.responses
    assert step.status is None and step.json_["hits"]["total"]["value"] == 2
    (chaos,) = fault_free(scenario_from(CHAOS)).endpoints
    assert chaos.chaos is None and chaos.responses[0].json_ == {"stargazers_count": 5}


# -- cells from real runs -------------------------------------------------------------------------


def test_a_404_as_written_wastes_three_calls(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """retries=3 on a 404: four calls, three after an answer that cannot improve; ``transient`` wastes none."""
    gone = scenario_from(GONE)
    as_written, transient = compare(harness_session, [gone], [PRESETS["as_written"], PRESETS["transient"]], 5)
    assert (as_written.runs, as_written.successes, as_written.calls, as_written.wasted_calls) == (
        1,
        0,
        {f"GET {REPO}": 4.0},
        3.0,
    )
    assert (as_written.attempts_mean, as_written.success_ci) == (4.0, wilson(0, 1))
    assert (transient.calls_mean, transient.wasted_calls, transient.attempts_p95) == (1.0, 0.0, 1.0)
    assert wasted_calls(harness_session.run(gone)) == 3


def test_chaos_varies_by_seed_and_each_seed_is_one_run(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Seeds 0..N-1 give different faults; the cell summarises exactly N runs."""
    chaos = scenario_from(CHAOS)
    ticks: list[int] = []
    (cell,) = compare(harness_session, [chaos], [PRESETS["no_retries"]], 6, lambda: ticks.append(1))
    assert cell.runs == len(ticks) == 6
    assert 0 < cell.successes < 6, "40% chaos on two calls: some seeds fail, some pass"
    served = {
        tuple(c.served for c in harness_session.run(chaos.model_copy(update={"seed": seed})).calls) for seed in range(6)
    }
    assert len(served) > 1
    assert cell.success_rate == cell.successes / 6 and cell.success_ci == wilson(cell.successes, 6)


def test_rows_missing_against_a_fault_free_run(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The ETL has no retries: one 500 fails it and both rows are missing; with retries, none is."""
    etl = scenario_from(ETL)
    as_written, transient = compare(harness_session, [etl], [PRESETS["as_written"], PRESETS["transient"]], 3)
    assert (as_written.success_rate, as_written.rows_missing, as_written.rows_duplicated) == (0.0, 2.0, 0.0)
    assert (transient.success_rate, transient.rows_missing, transient.rows_duplicated) == (1.0, 0.0, 0.0)
    assert transient.calls == {f"GET {CFPB}": 2.0}


def without_wall(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "cells": [{k: v for k, v in c.items() if k != "wall_s"} for c in report["cells"]]}


def test_same_seeds_give_the_same_json(harness_session: Session, scenario_from: Callable[[str], Scenario]) -> None:
    """Two comparisons with the same seeds agree to the byte, wall-clock fields aside (jitter and Retry-After too)."""
    scenarios = [scenario_from(CHAOS), scenario_from(GONE)]
    policies = [PRESETS["exponential_jitter"], PRESETS["transient_retry_after"]]
    first = compare_json(compare(harness_session, scenarios, policies, 3), policies, 3)
    second = compare_json(compare(harness_session, scenarios, policies, 3), policies, 3)
    assert json.dumps(without_wall(first), sort_keys=True) == json.dumps(without_wall(second), sort_keys=True)
    assert [c["runs"] for c in first["cells"]] == [3, 3, 1, 1]
    assert any(c["virtual_s_mean"] > 0 for c in first["cells"])


# -- reports ----------------------------------------------------------------------------------------


def cell(**overrides: Any) -> Cell:
    values: dict[str, Any] = dict(
        scenario="a | b",
        strategy="transient",
        runs=20,
        successes=18,
        success_rate=0.9,
        success_ci=wilson(18, 20),
        attempts_mean=2.25,
        attempts_p95=4.0,
        calls={f"GET {REPO}": 2.25},
        calls_mean=2.25,
        wasted_calls=0.5,
        virtual_s_mean=3.0,
        virtual_s_p95=7.0,
        rows_missing=None,
        rows_duplicated=None,
        wall_s=1.234,
    )
    return Cell(**{**values, **overrides})


def test_json_cells_have_the_documented_fields() -> None:
    """``--json`` writes {"cells": [...]} with the fields pipelines read."""
    report = compare_json([cell()], [PRESETS["transient"]], 20)
    (c,) = report["cells"]
    assert {
        "scenario",
        "strategy",
        "runs",
        "success_rate",
        "success_ci",
        "attempts_mean",
        "attempts_p95",
        "calls",
        "wasted_calls",
        "virtual_s_mean",
        "virtual_s_p95",
        "rows_missing",
        "rows_duplicated",
        "wall_s",
    } <= set(c)
    assert c["success_ci"] == [0.699, 0.9721] and c["calls"] == {f"GET {REPO}": 2.25}
    assert report["strategies"]["transient"]["options"] == PRESETS["transient"].task_options()
    json.dumps(report)  # plain JSON


def test_markdown_and_table_show_every_cell_and_the_options() -> None:
    """Markdown for $GITHUB_STEP_SUMMARY (a | in a name cannot break the table) and the terminal table."""
    cells = [cell(), cell(strategy="no_retries", rows_missing=2.0, rows_duplicated=0.0)]
    md = compare_markdown(cells, [PRESETS["transient"], PRESETS["no_retries"]], 20)
    rows = [line for line in md.splitlines() if line.startswith("| a")]
    assert len(rows) == 2 and all(row.count(" | ") == 9 for row in rows), rows
    assert "| a \\| b | transient | 20 | 90% | 70%-97% | 2.25 / 4 | 2.25 | 0.50 | 3.0 / 7.0 | - |" in md
    assert "| no_retries | `@task(retries=0)` | no task retries |" in md
    table = compare_table(cells).splitlines()
    assert table[0].split()[:3] == ["scenario", "strategy", "runs"]
    assert "2 / 0" in table[2]


def test_harness_compare_command_end_to_end(tmp_path: Path) -> None:
    """``harness compare PATH --strategies --seeds`` prints the table and writes JSON, Markdown and HTML."""
    scenario = tmp_path / "gone.yaml"
    scenario.write_text(GONE)
    out = tmp_path / "out"
    cmd = [
        str(Path(sys.executable).with_name("harness")),
        "compare",
        str(scenario),
        "--strategies",
        "as_written,transient",
        "--seeds",
        "2",
        "--json",
        str(out / "c.json"),
        "--markdown",
        str(out / "c.md"),
        "--html",
        str(out / "c.html"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""  # no progress bar off a terminal
    assert "retry_on_transient" in done.stdout
    cells = json.loads((out / "c.json").read_text())["cells"]
    assert [(c["strategy"], c["calls"][f"GET {REPO}"], c["wasted_calls"]) for c in cells] == [
        ("as_written", 4, 3),
        ("transient", 1, 0),
    ]
    assert "| gone | as_written |" in (out / "c.md").read_text()
    assert (out / "c.html").read_text().count('class="point"') == 2
    bad = subprocess.run([*cmd[:3], "--strategies", "transent"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "did you mean 'transient'" in bad.stderr


def test_a_run_past_its_time_limit_counts_as_a_failure(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A hung run fails its cell's success rate instead of stopping the comparison."""
    scenario = scenario_from("""
name: sometimes stuck
flow: tests.flows:hangs_on_503
endpoints:
  - request: GET https://api.example.test/maybe
    chaos: {rate: 0.5, faults: [{status: 503}], otherwise: {status: 200}}
""")
    limited = Session.__new__(Session)
    limited.__dict__.update(harness_session.__dict__)
    limited.time_limit = 1.0
    (cell,) = compare(limited, [scenario], [PRESETS["as_written"]], 6)
    assert cell.runs == 6
    assert 0 < cell.successes < 6  # the seeds that drew a 503 hung and count as failures
    assert cell.calls_mean == 1.0  # figures come from the runs that finished
