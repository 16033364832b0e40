"""What Prefect's API client does with each fault, measured: the README's table of it is this test's.

Each fault is served once, then the request passes: on the flow's first
request to Prefect's API (the client's version check, before it has ever
connected) and on a later one (registering the flow). A cell says whether the
client sent the request again (and how long it waited, on the virtual clock,
seed 0) or what the flow's call raised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness import Scenario, Session
from harness.scenario.model import FAULTS

README = Path(__file__).parent.parent / "README.md"
STATUSES = (
    ("503", "{status: 503}"),
    ("503, Retry-After: 3", "{status: 503, headers: {retry-after: '3'}}"),
    ("429", "{status: 429}"),
    ("502", "{status: 502}"),
    ("408", "{status: 408}"),
    ("500", "{status: 500}"),
    ("404", "{status: 404}"),
)
FIRST, LATER = "GET /admin/version", "POST /flows/"


def cell(session: Session, scenario_from: Callable[[str], Scenario], route: str, step: str) -> str:
    scenario = scenario_from(
        "name: one fault\nflow: tests.fidelity.api_idioms:sums\n"
        f"prefect_api:\n  - request: {route}\n    responses: [{step}, {{pass: true}}]\n"
    )
    outcome = session.run(scenario)
    sent = outcome.api_counts.get(route, 0)
    if outcome.raised is not None:
        kind = outcome.raised.split(":", 1)[0]
        return f"raises `{kind}`" + (f" ({sent} requests)" if sent != 1 else "")
    assert outcome.flow.name == "Completed", outcome.flow
    return f"sent again after {outcome.waited_s:.1f} s" if sent == 2 else f"{sent} requests"


def table(session: Session, scenario_from: Callable[[str], Scenario]) -> str:
    rows = ["| fault | first request (version check) | later request (registering the flow) |", "|---|---|---|"]
    kinds = [(f"`{f}`", f"{{fault: {f}}}") for f in (*FAULTS, "lost_answer")]
    kinds += [(f"status {label}", step) for label, step in STATUSES]
    for label, step in kinds:
        rows.append(
            f"| {label} | {cell(session, scenario_from, FIRST, step)} | {cell(session, scenario_from, LATER, step)} |"
        )
    return "\n".join(rows)


def test_the_readme_prints_what_prefects_client_does_with_each_fault(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    measured = table(harness_session, scenario_from)
    assert measured in README.read_text(), f"the README's table drifted from what was measured:\n{measured}"
