"""The scenario library: every scenario passes, and every exact expectation in it can fail.

Each scenario runs once; then each exact value of its ``expect`` (a state, a
type, a count, a result, a retry count) is changed, and each bound tightened
below what was observed, and the check must fail naming that field with the
expected and observed values. An expectation that cannot fail is a defect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import Outcome, Scenario, ScenarioError, Session, check, load_paths
from harness.checking.baseline import baseline_rows, judges_data
from harness.policies import Policy
from harness.scenario.model import (
    STATE_NAMES,
    STATE_TYPES,
    UNSET,
    RunExpect,
    StateMatch,
    TaskExpect,
    VirtualTime,
    WaitedExpect,
)

LIBRARY = Path(__file__).parent.parent / "scenarios"
SCENARIOS = [s for s in load_paths([LIBRARY]) if isinstance(s, Scenario)]
# Every scenario as written, then once per strategy it lists: (label, scenario with that expect, policy).
CASES = [case for scenario in SCENARIOS for case in scenario.cases()]
_outcomes: dict[str, Outcome] = {}


def outcome_of(session: Session, label: str, scenario: Scenario, policy: Policy | None = None) -> Outcome:
    if label not in _outcomes:
        _outcomes[label] = session.run(scenario, policy=policy)
    return _outcomes[label]


def test_library_is_valid_and_large() -> None:
    """Every document of the library validates; there are at least 24 scenarios."""
    invalid = [s for s in load_paths([LIBRARY]) if isinstance(s, ScenarioError)]
    assert not invalid, "\n".join(map(str, invalid))
    assert len(SCENARIOS) >= 24


def changed(value: Any) -> Any:
    """A different value of the same shape."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "!"
    if isinstance(value, list):
        return [*value, value[-1]] if value else [0]
    if isinstance(value, dict):
        return {**value, "__extra__": 1}
    return "something else"


def other_state(name: str) -> str:
    return next(s for s in ("Failed", "Completed") if s != name)


def mutations(scenario: Scenario, outcome: Outcome) -> list[tuple[str, Any, Scenario]]:
    """(field, new expected value, mutated scenario) for every exact value and bound of ``expect``."""
    exp = scenario.expect

    def with_expect(**update: Any) -> Scenario:
        return scenario.model_copy(update={"expect": exp.model_copy(update=update)})

    out = run_mutations("expect", exp, with_expect)
    for i, run in enumerate(exp.flow_runs):  # each flow run of a history, as the top level

        def rebuild(i: int = i, run: RunExpect = run, **update: Any) -> Scenario:
            runs = list(exp.flow_runs)
            runs[i] = run.model_copy(update=update)
            return with_expect(flow_runs=tuple(runs))

        out += run_mutations(f"expect.flow_runs[{i}]", run, rebuild)
    for key, n in exp.calls.items():
        out.append((f"expect.calls[{key}]", n + 1, with_expect(calls={**exp.calls, key: n + 1})))
    if exp.prefect_api is not None:
        for route, n in exp.prefect_api.calls.items():
            calls = {**exp.prefect_api.calls, route: n + 1}
            api = exp.prefect_api.model_copy(update={"calls": calls})
            out.append((f"expect.prefect_api.calls[{route}]", n + 1, with_expect(prefect_api=api)))
    if exp.raises is not None:
        out.append(("expect.raises", "^NothingRaised", with_expect(raises="^NothingRaised")))
    if exp.server is not None:
        server = exp.server
        if server.flow is not None and server.flow.state is not None:
            new = other_state(server.flow.state)
            flow = server.flow.model_copy(update={"state": new})
            out.append(("expect.server.flow", new, with_expect(server=server.model_copy(update={"flow": flow}))))
        for name, want in server.tasks.items():
            new = "Completed" if want is None or want.state is None else other_state(want.state)
            tasks = {**server.tasks, name: StateMatch(state=new)}
            out.append(
                (f"expect.server.tasks.{name}", new, with_expect(server=server.model_copy(update={"tasks": tasks})))
            )
    for name, want in exp.slots.items():
        got = outcome.slots[name]

        def slots(update: dict[str, Any], name: str = name, want: Any = want) -> Scenario:
            return with_expect(slots={**exp.slots, name: want.model_copy(update=update)})

        if want.held_after is not None:
            new_held = want.held_after + 1
            out.append((f"expect.slots.{name}.held_after", new_held, slots({"held_after": new_held})))
        if want.waited is not None and want.waited.max is not None and got.longest > 0:
            tight = round(got.longest * 0.9, 3)
            bound = slots({"waited": WaitedExpect(max=tight)})
            out.append((f"expect.slots.{name}.waited.max", f"at most {tight:g} s", bound))
        if want.waited is not None and want.waited.min is not None:
            tight = round(got.longest * 1.1 + 0.01, 3)
            bound = slots({"waited": WaitedExpect(min=tight)})
            out.append((f"expect.slots.{name}.waited.min", f"at least {tight:g} s", bound))
    if exp.sqlite is not None:
        new = changed(exp.sqlite.equals)
        out.append(("expect.sqlite.equals", new, with_expect(sqlite=exp.sqlite.model_copy(update={"equals": new}))))
    if exp.virtual_time is not None:
        if exp.virtual_time.max is not None and outcome.waited_s > 0:  # a max of 0 has no tighter value
            tight = round(outcome.waited_s * 0.9 - 0.01, 3)
            out.append(("expect.virtual_time.max", f"<= {tight:g} s", with_expect(virtual_time=VirtualTime(max=tight))))
        if exp.virtual_time.min is not None:
            tight = round(outcome.waited_s * 1.1 + 0.01, 3)
            out.append(("expect.virtual_time.min", f">= {tight:g} s", with_expect(virtual_time=VirtualTime(min=tight))))
    return out


def run_mutations(at: str, exp: RunExpect, rebuild: Any) -> list[tuple[str, Any, Scenario]]:
    """The mutations of one flow run's expectations (``at``: their place), each built by ``rebuild(**update)``."""
    out: list[tuple[str, Any, Scenario]] = []
    if exp.flow is not None:
        if exp.flow.state is not None:
            new = other_state(exp.flow.state)
            field = f"{at}.flow.state" if exp.flow.type or exp.flow.message else f"{at}.flow"
            out.append((field, new, rebuild(flow=exp.flow.model_copy(update={"state": new}))))
        if exp.flow.type is not None:
            new = next(t for t in STATE_TYPES if t != exp.flow.type)
            out.append((f"{at}.flow.type", new, rebuild(flow=exp.flow.model_copy(update={"type": new}))))
    if exp.result is not UNSET:
        out.append((f"{at}.result", changed(exp.result), rebuild(result=changed(exp.result))))
    for name, runs in exp.tasks.items():
        for i, run in enumerate(runs):
            field = f"{at}.tasks.{name}" + (f"[{i}]" if len(runs) > 1 else "")

            def replace(
                new_run: TaskExpect, i: int = i, name: str = name, runs: tuple[TaskExpect, ...] = runs
            ) -> Scenario:
                return rebuild(tasks={**exp.tasks, name: runs[:i] + (new_run,) + runs[i + 1 :]})

            if run.state is not None:
                new = other_state(run.state)
                sub = f"{field}.state" if run.type or run.message else field
                out.append((sub, new, replace(run.model_copy(update={"state": new}))))
            if run.retries is not None:
                out.append(
                    (f"{field}.retries", run.retries + 1, replace(run.model_copy(update={"retries": run.retries + 1})))
                )
            if run.runs is not None:
                out.append((f"{field}.runs", run.runs + 1, replace(run.model_copy(update={"runs": run.runs + 1}))))
    return out


@pytest.mark.parametrize(("label", "scenario", "policy"), CASES, ids=[label for label, _, _ in CASES])
def test_every_exact_expectation_can_fail(
    harness_session: Session, label: str, scenario: Scenario, policy: Policy | None
) -> None:
    """Each scenario and strategy variant passes as written; each changed value or tightened bound fails."""
    if scenario.skipped():
        pytest.skip(scenario.skipped())
    outcome = outcome_of(harness_session, label, scenario, policy)
    baseline = baseline_rows(harness_session, scenario, policy) if judges_data(scenario) else None
    as_written = check(scenario, outcome, baseline=baseline)
    if scenario.xfail is None:
        assert as_written == [], "\n".join(map(str, as_written))
    found = mutations(scenario, outcome)
    assert found or scenario.expect.invariants, f"{label!r} asserts nothing exact"
    for field, new, mutated in found:
        mismatches = [m for m in check(mutated, outcome, baseline=baseline) if m not in as_written]
        assert mismatches, f"changing {field} to {new!r} did not fail {label!r}"
        assert mismatches[0].field == field, (field, mismatches)
        text = str(mismatches[0])
        assert "expected" in text and "observed" in text
        if not isinstance(new, str) or field.endswith(("state", "type", ".flow")) or "tasks" in field:
            assert repr(new) in text or str(new) in text, (field, text)


def test_state_vocabulary_is_prefects() -> None:
    """Every state name the language accepts is one Prefect's own constructors produce."""
    import prefect.states as states

    produced = {
        states.Completed().name,
        states.Failed().name,
        states.Crashed().name,
        states.Cancelled().name,
        states.Pending().name,
        states.Running().name,
        states.Scheduled().name,
        states.AwaitingRetry().name,
        states.Retrying().name,
        states.Late().name,
        states.Paused().name,
        states.Suspended().name,
        states.Cancelling().name,
        states.AwaitingConcurrencySlot().name,
    }
    assert produced <= set(STATE_NAMES)
    assert {"TimedOut", "Cached", "RolledBack"} <= set(STATE_NAMES)
    assert StateMatch(state="TimedOut").state == "TimedOut"
