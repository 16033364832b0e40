"""``harness run``'s table: rows that read apart, and the seconds ``expect.virtual_time`` checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import Scenario, Session
from harness.checking.verdict import Result
from harness.report.results import fit, table


@pytest.mark.parametrize(
    ("name", "width", "expected"),
    [
        ("short", 60, "short"),
        ("a" * 50 + "[transient]", 40, "a" * 19 + "…" + "a" * 9 + "[transient]"),
        ("b" * 70, 30, "b" * 19 + "…" + "b" * 10),
    ],
)
def test_a_long_name_is_cut_in_its_middle_keeping_its_strategy(name: str, width: int, expected: str) -> None:
    assert fit(name, width) == expected
    assert len(fit(name, width)) <= width


def test_two_variants_of_a_long_scenario_read_apart_and_the_time_is_what_virtual_time_checks(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    scenario = scenario_from(
        "name: a scenario whose name is far longer than the sixty characters the table gives it\n"
        "flow: tests.flows:delayed_ping\nparameters: {url: 'https://api.example.test/p'}\n"
        "endpoints:\n  - request: GET https://api.example.test/p\n"
        "    responses: [{status: 500, latency: 2}, {status: 200}]\n"
        "strategies:\n  no_retries:\n    retries: 0\n  retries:\n    retries: 3\n    retry_delay_seconds: 1\n"
    )
    results = []
    for label, case, policy in scenario.cases():
        outcome = harness_session.run(case, policy=policy)
        results.append(Result.of(case, outcome, [], label=label))
    header, *rows = table(results).splitlines()
    assert header.split()[-4:] == ["waited", "s", "wall", "s"]
    names = [row[:60].rstrip() for row in rows]
    assert len(set(names)) == 3 and names[1].endswith("[no_retries]") and names[2].endswith("[retries]")
    # the latency, then the retry delay: as written (0.2 s), none, and the strategy's 1 s; compute left out
    assert [row.split()[-2] for row in rows] == ["2.20", "2.00", "3.00"]
