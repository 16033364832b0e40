"""What a run of a scenario's flow did, as the checks and reports read it: the ``Outcome``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.run.clock import Clock
from harness.run.exits import STOPPED
from harness.run.guard import NetworkGuard
from harness.run.injector import api_counts
from harness.run.schedules import Call
from harness.run.states import Recorder
from harness.scenario.model import Scenario

if TYPE_CHECKING:
    from harness.run.server_view import ServerView
    from harness.run.slots import LimitSlots

NO_STATE = "no state"  # the flow's "state" when its call raised before Prefect gave it one


@dataclass(frozen=True, slots=True)
class StateInfo:
    """A final Prefect state: its type, its name and its message."""

    type: str
    name: str
    message: str | None


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One task run: its name, final state, run count and state history."""

    name: str
    state: StateInfo
    run_count: int
    history: tuple[str, ...]
    delays: tuple[float, ...] = ()
    note: str = ""  # what the harness knows of how it ended, e.g. cancelled at the flow's exit
    id: Any = None  # Prefect's task run id: the ``task_run`` of the calls it made

    @property
    def retries(self) -> int:
        return max(self.run_count - 1, 0)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything observed of one scenario run."""

    scenario: str
    flow: StateInfo
    tasks: tuple[TaskRun, ...]
    calls: tuple[Call, ...]
    counts: dict[str, int]
    result: Any
    wall_s: float
    virtual_s: float
    timeline: tuple[tuple[float, str], ...] = ()
    sqlite: Any = None
    sqlite_error: str | None = None
    seed: int = 0
    blocked: tuple[str, ...] = ()  # connections outside httpx the network guard refused
    waited_s: float = 0.0  # virtual seconds spent waiting (delays, latency, timeouts), no compute
    warnings: tuple[str, ...] = ()  # what the flow does that a reader should know (futures it never waited on)
    hooks: tuple[tuple[str, str, str], ...] = ()  # state hooks that ran: (flow | other flow | task, name, kind)
    # With ``crash:`` or ``reruns``: every flow run's own outcome, in order. ``flow``, ``tasks`` and ``result``
    # above are then the last run's; calls, counts, hooks and times cover them all; data is read after the last.
    runs: tuple[Outcome, ...] = ()
    crashed: str = ""  # the crash point the first run died at, and how: "after_return: store (kill)"
    # With ``prefect_api`` (or expectations of it): the flow's requests to Prefect's API, per route, and what the
    # server recorded (the second view of the run: after API faults it can differ from ``flow`` and ``tasks``).
    raised: str | None = None  # "Type: message" when the flow call raised instead of returning a state
    cancelled: str | None = None  # with ``cancel:``: where the run was cancelled ("" when it never got there)
    api_calls: tuple[Call, ...] = ()
    api_counts: dict[str, int] = field(default_factory=dict)
    server: ServerView | None = None
    # With ``concurrency_limits``: per limit, the slots it held after the run and each wait for one.
    slots: dict[str, LimitSlots] = field(default_factory=dict)

    def hooks_ran(self, owner: str, kind: str, name: str | None = None) -> int:
        """How many times hooks of ``kind`` ran for ``owner`` (``flow``: the scenario's flow run; ``other flow``:
        its subflows and any flow run it started otherwise; ``task``), or for the one ``name``d."""
        return sum(1 for o, n, k in self.hooks if o == owner and k == kind and name in (None, n))

    @property
    def unmatched(self) -> tuple[Call, ...]:
        return tuple(c for c in self.calls if c.endpoint is None)

    def task_runs(self, name: str) -> list[TaskRun]:
        return [t for t in self.tasks if t.name == name]

    def calls_of(self, task: TaskRun) -> list[Call]:
        """The calls ``task`` made, in the order it made them."""
        return [c for c in self.calls if c.task_run is not None and c.task_run == task.id]


def outcome_of(
    scenario: Scenario,
    state: Any,
    recorder: Recorder,
    responder: Any,  # a Responder: its calls and counts
    wall: float,
    virtual: float,
    sqlite_value: Any,
    sqlite_error: str | None,
    guard: NetworkGuard,
    clock: Clock,
    server: ServerView | None = None,
    slots: dict[str, LimitSlots] | None = None,
) -> Outcome:
    result, raised = None, None
    if isinstance(state, BaseException):  # the flow call raised: Prefect gave the run no state to return
        raised = f"{type(state).__name__}: {state}"
        flow = StateInfo("NONE", NO_STATE, raised)
    else:
        flow = StateInfo(state.type.value, state.name, state.message)
        if state.is_completed():
            result = state.result(raise_on_failure=False)
    tasks = task_runs_of(recorder)
    timeline = sorted(
        [(at, f"{r.name}: {name}") for r in recorder.tasks.values() for at, _, name in r.history]
        + [(at, f"flow: {name}") for at, name in recorder.flow_history]
        + [
            (c.at, f"{c.method} {c.url} -> {c.served}" + (" (wire)" if c.transport == "wire" else ""))
            for c in responder.calls
        ]
    )
    return Outcome(
        scenario=scenario.name,
        flow=flow,
        tasks=tasks,
        calls=tuple(responder.calls),
        counts=responder.counts(),
        result=result,
        wall_s=wall,
        virtual_s=virtual,
        timeline=tuple(timeline),
        sqlite=sqlite_value,
        sqlite_error=sqlite_error,
        seed=scenario.seed,
        blocked=tuple(guard.blocked),
        waited_s=clock.skipped,
        warnings=_warnings(tasks),
        hooks=hooks_of(recorder.hooks, recorder.flow_run_id),
        raised=raised,
        api_calls=tuple(api.calls) if (api := getattr(responder, "api", None)) is not None else (),
        api_counts=api_counts(api.calls) if api is not None else {},
        server=server,
        slots=slots or {},
    )


def task_runs_of(recorder: Recorder) -> tuple[TaskRun, ...]:
    """The task runs the recorder saw, in the flow's order, each as its engine last set it."""
    stopped = set(recorder.exits.stopped)
    return tuple(
        TaskRun(
            name=r.name,
            state=StateInfo(r.history[-1][1], r.history[-1][2], r.message),
            run_count=r.run_count,
            history=tuple(h[2] for h in r.history),
            delays=tuple(r.delays),
            note=STOPPED if r.id in stopped else "",
            id=r.id,
        )
        for r in recorder.in_order()
    )


def history_of(outcomes: list[Outcome], crashed: str = "") -> Outcome:
    """One outcome for a history of flow runs: the last run's states and result; calls, hooks and times of all."""
    last = outcomes[-1]
    counts = {key: sum(o.counts.get(key, 0) for o in outcomes) for key in last.counts}
    return Outcome(
        scenario=last.scenario,
        flow=last.flow,
        tasks=last.tasks,
        calls=tuple(c for o in outcomes for c in o.calls),
        counts=counts,
        result=last.result,
        wall_s=sum(o.wall_s for o in outcomes),
        virtual_s=last.virtual_s,  # the clock goes on across the runs
        timeline=tuple(entry for o in outcomes for entry in o.timeline),
        sqlite=last.sqlite,
        sqlite_error=last.sqlite_error,
        seed=last.seed,
        blocked=tuple(b for o in outcomes for b in o.blocked),
        waited_s=last.waited_s,
        warnings=tuple(dict.fromkeys(w for o in outcomes for w in o.warnings)),
        hooks=tuple(h for o in outcomes for h in o.hooks),
        api_calls=tuple(c for o in outcomes for c in o.api_calls),
        api_counts=api_counts(c for o in outcomes for c in o.api_calls),
        server=last.server,
        slots=_slots_of(outcomes),
        raised=last.raised,
        cancelled=next((o.cancelled for o in outcomes if o.cancelled is not None), None),
        runs=tuple(outcomes),
        crashed=crashed,
    )


def _slots_of(outcomes: list[Outcome]) -> dict[str, LimitSlots]:
    """The limits as the last run left them, with the waits of every run."""
    import dataclasses

    last = outcomes[-1].slots
    return {
        name: dataclasses.replace(
            limit, waited=tuple(w for o in outcomes if name in o.slots for w in o.slots[name].waited)
        )
        for name, limit in last.items()
    }


def _warnings(tasks: tuple[TaskRun, ...]) -> tuple[str, ...]:
    stopped = Counter(t.name for t in tasks if t.note == STOPPED)
    if not stopped:
        return ()
    names = ", ".join(f"{name} ({n} run{'s' if n > 1 else ''})" for name, n in stopped.items())
    return (
        f"the flow returned without waiting on task runs it submitted, and Prefect cancelled them: {names}; "
        "wait on the futures (future.result(), prefect.futures.wait) so that they finish",
    )


def hooks_of(ran: list[tuple[str, str, str, Any]], flow_run_id: Any) -> tuple[tuple[str, str, str], ...]:
    """The hooks that ran, the scenario's flow run told from the other flow runs by its id."""
    return tuple(
        ("other flow" if owner == "flow" and run_id != flow_run_id else owner, name, kind)
        for owner, name, kind, run_id in ran
    )
