"""Differential check: each idiom of ``cases`` through the harness and through a plain Prefect reference.

The reference (``tests.fidelity.reference``) runs once per module in a
subprocess, on ``prefect_test_harness()`` with plain respx and real time; each
case then runs through ``harness.Session`` as a scenario document and the two
outcomes must be equal: the flow's final state, each task run's final state
and run count, calls per endpoint, requests matching no endpoint, the result.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Outcome, Scenario, ScenarioError, Session, load_file
from tests.fidelity.cases import CASES
from tests.fidelity.hook_log import counted
from tests.fidelity.references import ReferenceFailed, References
from tests.fidelity.step_cases import STEP_CASES

pytestmark = pytest.mark.fidelity

RACY_STATES = {"Completed", "Failed", "Crashed"}


class Reference:
    """One reference module's results, recorded or live (``references.References``), read when a test needs them."""

    def __init__(self, references: References, module: str) -> None:
        self.references = references
        self.module = module

    def results(self) -> dict[str, Any]:
        try:
            return self.references.results(self.module)
        except ReferenceFailed as failure:
            pytest.fail(str(failure))


@pytest.fixture(scope="module")
def reference(references: References) -> Reference:
    """Every case through the reference: its recording, or one live run shared by the session's workers."""
    return Reference(references, "tests.fidelity.reference")


def scenario_of(spec: dict[str, Any], folder: Path) -> Scenario:
    """The case as a scenario document, written to a file and loaded as users load theirs (a case's
    ``strategy`` as the document's one strategy, ``variant``)."""
    keys = (
        "name",
        "flow",
        "parameters",
        "endpoints",
        "seed",
        "transport",
        "crash",
        "reruns",
        "rerun_after",
        "prefect_api",
        "events",
        "cancel",
        "concurrency_limits",
        "functions",
        "expect",
    )
    document = {k: spec[k] for k in keys if k in spec}
    if "strategy" in spec:
        document["strategies"] = {"variant": spec["strategy"]}
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    (loaded,) = load_file(path)
    if isinstance(loaded, ScenarioError):
        raise loaded
    return loaded


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


KEYS = (
    "flow",
    "flow_type",
    "flow_message",
    "tasks",
    "flow_calls",
    "flow_states",
    "calls",
    "unmatched",
    "result",
    "sqlite",
    "hooks",
    "virtual_time",
)
# The reference's wall time is its waits plus its own compute, which a loaded machine makes as long as it likes:
# the harness's virtual time (waits on the critical path) is never more than it. For a case whose calls are
# sequential (``sequential: True``), it is at least the latency the reference slept for real.
TIME_TOLERANCE_S = 0.02


def observed(outcome: Outcome) -> dict[str, Any]:
    """The harness's outcome in the reference's terms.

    Each task run with its state, run count, retries and its own calls in order with what served each. Task
    runs are compared as a sorted list: Prefect's API keeps no creation order to compare the harness's with,
    and the order of calls across concurrent task runs is not Prefect's to fix.
    """
    return {
        "flow": outcome.flow.name,
        "flow_type": outcome.flow.type,
        "flow_message": outcome.flow.message,
        "tasks": sorted(
            [
                t.name,
                t.state.name,
                t.state.type,
                t.run_count,
                t.retries,
                [[c.endpoint, c.served] for c in outcome.calls_of(t) if c.endpoint],
                list(t.history),
                t.state.message,
            ]
            for t in outcome.tasks
        ),
        "flow_calls": [[c.endpoint, c.served] for c in outcome.calls if c.task_run is None and c.endpoint],
        "flow_states": sorted(what.removeprefix("flow: ") for _, what in outcome.timeline if what.startswith("flow: ")),
        "calls": dict(outcome.counts),
        "unmatched": [f"{c.method} {c.url}" for c in outcome.unmatched],
        "result": jsonable(outcome.result),
        "sqlite": jsonable(outcome.sqlite),
        "hooks": counted(list(outcome.hooks)),
        "virtual_time": round(outcome.waited_s, 3),  # the reference's: {"wall": seconds, "slept": seconds}
    }


def differences(harness: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    keys = [key for key in KEYS[:-1] if _comparable(key, harness[key]) != _comparable(key, ref[key])]
    return keys if time_agrees(harness["virtual_time"], ref["virtual_time"]) else [*keys, "virtual_time"]


RACE_KEYS = ("flow", "flow_type", "result", "unmatched")  # what Prefect decides the same way in a documented race


def stable(spec: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """What the reference decides the same way on every run: all that is compared but time, or on a documented
    race (``intended_difference``), ``RACE_KEYS``."""
    if spec.get("intended_difference") is not None:
        return {key: ref[key] for key in RACE_KEYS}
    return {key: _comparable(key, ref[key]) for key in KEYS[:-1]}


def time_agrees(waited: float, ref: dict[str, Any]) -> bool:
    """The harness's virtual time against the reference's wall time and, for sequential calls, its latency slept."""
    return ref.get("slept", 0.0) - TIME_TOLERANCE_S <= waited <= ref["wall"] + TIME_TOLERANCE_S


def _comparable(key: str, value: Any) -> Any:
    """A state message names run ids and the names Prefect draws for runs (``'get_stars-a1b'``): not compared."""
    if key == "flow_message" and isinstance(value, str):
        return _message(value)
    if key == "tasks":
        return [[*t[:7], _message(t[7] or "")] for t in value]  # no message: None in the client, "" in the API
    return value


def _message(value: str) -> str:
    value = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", value)
    return re.sub(r"'([^'\n]+)-[0-9a-f]{3}'", r"'\1-<n>'", value)  # a run's name, quoted as Prefect quotes it


def report(
    name: str, harness: dict[str, Any], ref: dict[str, Any], keys: list[str], note: str = "", compared: Any = KEYS
) -> str:
    """Where the two sides differ (``keys``), every ``compared`` key shown side by side."""
    width = max(map(len, compared))
    lines = [f"harness and Prefect disagree on {', '.join(keys)} in case {name!r}{note}:"]
    for key in compared:
        mark = "!=" if key in keys else "=="
        lines.append(f"  {key:{width}} {mark} harness:   {json.dumps(harness[key], sort_keys=True)}")
        lines.append(f"  {'':{width}}    reference: {json.dumps(ref[key], sort_keys=True)}")
    return "\n".join(lines)


ALL_CASES = [*CASES, *STEP_CASES]


@pytest.mark.parametrize("spec", ALL_CASES, ids=[c["name"] for c in ALL_CASES])
def test_harness_agrees_with_prefect(
    spec: dict[str, Any], harness_session: Session, reference: Reference, tmp_path: Path
) -> None:
    """The harness's outcome equals the plain Prefect run's, or differs only as the case documents."""
    scenario = scenario_of(spec, tmp_path)
    policy = scenario.strategies["variant"].policy if "strategy" in spec else None
    harness = observed(harness_session.run(scenario, policy=policy))
    ref = reference.results()[spec["name"]]
    if ref["error"]:
        pytest.fail(f"the reference could not run case {spec['name']!r}:\n{ref['error']}")
    waits = {"wall": ref["wall_s"], **({"slept": ref["slept_s"]} if spec.get("sequential") else {})}
    ref = {**ref, "virtual_time": waits}  # the reference waits for real: its time is the wall's
    why = spec.get("intended_difference")
    if why is None:
        keys = differences(harness, ref)
        assert not keys, report(spec["name"], harness, ref, keys)
        return
    # A documented race: Prefect's own outcome varies run to run, the harness pins it.
    # What is deterministic must still agree; the harness must give the same outcome every run.
    keys = [k for k in RACE_KEYS if harness[k] != ref[k]]
    assert not keys, report(spec["name"], harness, ref, keys, f" (beyond the intended difference: {why})")
    for side, seen in (("harness", harness), ("reference", ref)):
        states = {state for _, state, *_ in seen["tasks"]}
        assert seen["tasks"] and states <= RACY_STATES, (
            f"{side} task states {sorted(states)} outside {sorted(RACY_STATES)} "
            f"in case {spec['name']!r}: {seen['tasks']}"
        )
    again = [observed(harness_session.run(scenario, policy=policy)) for _ in range(2)]
    assert all(a == harness for a in again), f"the harness did not pin case {spec['name']!r} ({why}):\n" + "\n".join(
        json.dumps(a, sort_keys=True) for a in [harness, *again]
    )


def _call_moved(tasks: list[list[Any]]) -> list[list[Any]]:
    """The first call of the task run with the most calls, said to be another task run's."""
    donor = max(range(len(tasks)), key=lambda i: len(tasks[i][5]))
    to = (donor + 1) % len(tasks)
    moved = [list(t) for t in tasks]
    moved[to][5] = [moved[donor][5][0], *moved[to][5]]
    moved[donor][5] = moved[donor][5][1:]
    return sorted(moved)


MUTANTS = {
    "one fewer retry": lambda o: {**o, "tasks": [[*t[:4], t[4] - 1, *t[5:]] if t[4] else t for t in o["tasks"]]},
    "a call said to be another task run's": lambda o: {**o, "tasks": _call_moved(o["tasks"])},
    "a call served otherwise": lambda o: {
        **o,
        "tasks": [[*t[:5], [[e, "503"] for e, _ in t[5]], *t[6:]] for t in o["tasks"]],
    },
    "a state left out of a task run's history": lambda o: {
        **o,
        "tasks": [[*t[:6], t[6][1:], t[7]] for t in o["tasks"]],
    },
    "a task run's message changed": lambda o: {**o, "tasks": [[*t[:7], "Finished."] for t in o["tasks"]]},
    "a flow run's state added": lambda o: {**o, "flow_states": sorted([*o["flow_states"], "Retrying"])},
    "a task's state type changed": lambda o: {**o, "tasks": [[t[0], t[1], "FAILED", *t[3:]] for t in o["tasks"]]},
    "a run count changed": lambda o: {**o, "tasks": [[*t[:3], t[3] + 1, *t[4:]] for t in o["tasks"]]},
    "the flow's state type changed": lambda o: {**o, "flow_type": "FAILED"},
    "the flow's message changed": lambda o: {**o, "flow_message": "All states completed, mostly."},
    "a call dropped": lambda o: {**o, "calls": {k: max(v - 1, 0) for k, v in o["calls"].items()}},
    "an unmatched request added": lambda o: {**o, "unmatched": [*o["unmatched"], "GET https://x.test/"]},
    "a call of the flow's own body added": lambda o: {
        **o,
        "flow_calls": [*o["flow_calls"], ["GET https://x.test/", "200"]],
    },
    "the result changed": lambda o: {**o, "result": [*o["result"], 0]},
    "virtual time doubled": lambda o: {**o, "virtual_time": o["virtual_time"] * 2},
    "a stored row more": lambda o: {**o, "sqlite": (o["sqlite"] or 0) + 1},
}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_oracle_fails_on_each_mutant_of_what_the_harness_reports(
    mutant: str, harness_session: Session, tmp_path: Path
) -> None:
    """Each field the oracle compares matters: a changed retry count, order, type, count, message, result or time
    fails."""
    (spec,) = [c for c in CASES if c["name"] == ".submit then .result() with one retry"]
    seen = observed(harness_session.run(scenario_of(spec, tmp_path)))
    assert len(seen["tasks"]) == 3 and any(t[4] for t in seen["tasks"]) and all(t[5] for t in seen["tasks"])
    assert seen["virtual_time"] >= 0.05  # its retry delay: doubled, it is more than the run could have taken
    as_reference = {**seen, "virtual_time": {"wall": seen["virtual_time"]}}
    assert differences(seen, as_reference) == []
    assert differences(MUTANTS[mutant](seen), as_reference) != []


def test_the_oracle_fails_when_a_hook_is_miscounted(harness_session: Session, tmp_path: Path) -> None:
    """The hooks that ran are compared: one left out, one of another kind, one more, each fails."""
    (spec,) = [c for c in CASES if c["name"].startswith("hooks of every kind: on_running per attempt")]
    seen = observed(harness_session.run(scenario_of(spec, tmp_path)))
    assert ["flow", "hooks-of-every-kind", "on_completion", 2] in seen["hooks"]  # two hooks, each once
    as_reference = {**seen, "virtual_time": {"wall": seen["virtual_time"]}}
    assert differences(seen, as_reference) == []
    mutants = [
        seen["hooks"][1:],
        [[*h[:2], "on_failure" if h[2] == "on_running" else h[2], h[3]] for h in seen["hooks"]],
        [[*h[:3], h[3] + 1] for h in seen["hooks"]],
    ]
    for hooks in mutants:
        assert differences({**seen, "hooks": hooks}, as_reference) == ["hooks"]


def test_a_state_message_is_compared_but_for_run_ids_and_drawn_run_names() -> None:
    """What the message normalisation leaves out, and that it leaves the rest (a URL, a hyphenated word) in."""
    one = {"flow_message": "Task run 'fetch_item-a1b' failed: 01a242fb-6b3a-71df-9667-43c3eca96f90 at /re-add"}
    two = {"flow_message": "Task run 'fetch_item-c0d' failed: 01a242fb-6b41-75d7-89b6-e1ceff855016 at /re-add"}
    assert _comparable("flow_message", one["flow_message"]) == _comparable("flow_message", two["flow_message"])
    assert _comparable("flow_message", "GET /abc-123") != _comparable("flow_message", "GET /abc-456")
