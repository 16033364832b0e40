"""Where a state is recorded: task runs and flow states, as Prefect's engine reports them.

The API hears of task states only later, through events flushed by the
server; the harness records them in-process instead, from the task engine's
own state-change reports (``hooks`` routes them here). A task run's retries
spent are ``run_count - 1``; the delay of each retry is the one its options
give, or, for jitter, the one drawn, to the millisecond.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from harness.run.clock import Clock
from harness.run.exits import RETRY_STATES, ExitGate
from harness.scenario.model import HOOK_KINDS


@dataclass(slots=True)
class TaskRecord:
    """What the harness saw of one task run."""

    id: Any
    name: str
    task: Any = None
    history: list[tuple[float, str, str]] = field(default_factory=list)  # (virtual s, type, name)
    run_count: int = 0
    message: str | None = None
    attempt_started: float = 0.0
    attempt_waited: float = 0.0  # seconds this attempt has waited so far (its latency), the compute aside
    delays: list[float] = field(default_factory=list)


def _configured_delay(task: Any, run_count: int) -> float | None:
    """The delay the task's options give before its next retry, when it is not drawn at random.

    ``scheduled_time`` is "now + delay" taken a moment before the state's own
    timestamp, so measuring the delay from the state loses a little of it.
    """
    if task is None or task.retry_jitter_factor:
        return None
    delays = task.retry_delay_seconds
    if isinstance(delays, list | tuple):
        return float(delays[min(run_count - 1, len(delays) - 1)]) if delays else None
    return float(delays) if delays is not None else None


FINAL_TYPES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _submitted(task_run_id: Any) -> bool:
    """Whether the flow run's task runner holds a cancel event for this task run: it was submitted."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is not None and task_run_id in getattr(ctx.task_runner, "_cancel_events", {})


class Recorder:
    """Task runs and their state changes, as the engine reports them; flow states too."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # The configured retry delay of the flow run proposing states in this context (``hooks``).
        self.flow_retry_delay: contextvars.ContextVar[float] = contextvars.ContextVar("flow_retry_delay", default=0.0)
        self.tasks: dict[Any, TaskRecord] = {}
        self.flow_history: list[tuple[float, str]] = []
        self.flow_run_id: Any = None  # the scenario's flow run's
        self._pending: list[tuple[Any, float]] = []  # (scheduled_time, delay) of retries not yet waited
        self._lock = threading.Lock()
        self.exits = ExitGate(self.is_final)
        # The order the flow called or submitted its task runs in: deterministic, unlike the order
        # concurrent task runs start in. Submitted runs get theirs at ``submit``, called ones here.
        self._order: dict[Any, int] = {}
        self._drawn = threading.local()  # the jittered delay a task run's thread drew last
        # (flow | task, its name, hook kind, the flow run's id), as they ran: ``outcome_of`` tells the scenario's
        # flow run from the others (its subflows, a flow run the flow started in a thread of its own)
        self.hooks: list[tuple[str, str, str, Any]] = []
        self.listeners: list[Callable[[], None]] = []  # told of each hook and state recorded (a crash's snapshots)

    def hook_ran(self, engine: Any, state: Any, hook: Any) -> None:
        """A state hook Prefect is about to call, from ``engine``'s ``call_hooks`` for ``state`` (``hooks``).

        Prefect chose it; this only names its kind: the hook list of the flow or task that holds it (the
        state's kind when it is in several). Prefect calls this before its own ``try``: nothing here may raise
        into the run, so a hook that cannot be told is recorded as ``unknown``.
        """
        try:
            task = getattr(engine, "task", None)
            owner = task if task is not None else engine.flow
            kinds = [k for k in HOOK_KINDS if any(h is hook for h in getattr(owner, f"{k}_hooks", None) or ())]
            if len(kinds) > 1:
                kinds = [k for k in kinds if _entered(state, k)] or kinds
            run_id = None if task is not None else getattr(getattr(engine, "flow_run", None), "id", None)
            entry = ("task" if task is not None else "flow", owner.name, kinds[0] if kinds else "unknown", run_id)
        except Exception:  # noqa: BLE001 (a user's hook object of any kind must not fail the run)
            entry = ("unknown", "", "unknown", None)
        with self._lock:
            self.hooks.append(entry)
        for heard in self.listeners:
            heard()

    def drew(self, delay: float) -> None:
        """The retry delay Prefect's jitter just drew, in the task run's own thread (``hooks``)."""
        self._drawn.value = delay

    def submitted(self, task_run_id: Any) -> None:
        """A task run the flow has just submitted (in the flow's own order)."""
        with self._lock:
            self._order.setdefault(task_run_id, len(self._order))

    def in_order(self) -> list[TaskRecord]:
        """Task runs in the order the flow called or submitted them."""
        with self._lock:
            last = len(self._order)
            return sorted(self.tasks.values(), key=lambda r: self._order.get(r.id, last))

    def name_of(self, task_run_id: Any) -> str:
        """The task name of a task run ("flow" for none: slots the flow's own code took)."""
        with self._lock:
            record = self.tasks.get(task_run_id)
        return record.name if record is not None else "flow"

    def is_final(self, task_run_id: Any) -> bool:
        with self._lock:
            rec = self.tasks.get(task_run_id)
            return rec is not None and bool(rec.history) and rec.history[-1][1] in FINAL_TYPES

    def exact_delay(self, seconds: float) -> float:
        """The configured delay of the retry whose wait asks for ``seconds``.

        The engine sleeps ``scheduled_time - now()``, a little less than the
        delay (three 600 s retries would sum to 1799.99 s); the delay itself is
        taken from the AwaitingRetry state, to the millisecond.
        """
        import prefect.types._datetime as dt

        # The engine's own clock reads virtual time (``hooks``): wall time plus what was skipped.
        target = dt.now("UTC") + timedelta(seconds=self.clock.skipped + seconds)
        with self._lock:
            for i, (scheduled, delay) in enumerate(self._pending):
                if abs((scheduled - target).total_seconds()) < 0.05:
                    del self._pending[i]
                    return delay
        return seconds

    def record_flow(self, state: Any) -> None:
        if self.flow_run_id is None:  # the scenario's flow run proposes a state first, before any subflow
            self.flow_run_id = state.state_details.flow_run_id
        self.flow_history.append((self.clock.now(), state.name))
        if state.name == "AwaitingRetry":
            self.clock.sleep(self.flow_retry_delay.get())

    def record(self, task_run: Any, state: Any) -> None:
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        task = ctx.task if ctx is not None and ctx.task_run.id == task_run.id else None
        with self._lock:
            rec = self.tasks.get(task_run.id)
            if rec is None:
                name = task.name if task is not None else task_run.name.rsplit("-", 1)[0]
                rec = self.tasks[task_run.id] = TaskRecord(task_run.id, name, task)
                if not _submitted(task_run.id):
                    self._order.setdefault(task_run.id, len(self._order))
            elif task is not None and rec.task is None:
                rec.task, rec.name = task, task.name
            now = self.clock.now()
            rec.history.append((now, state.type.value, state.name))
            rec.run_count = task_run.run_count
            rec.message = state.message
            if state.is_running():
                rec.attempt_started = now
                rec.attempt_waited = 0.0
            scheduled = state.state_details.scheduled_time
            if state.name == "AwaitingRetry" and scheduled is not None:
                delay = _configured_delay(rec.task, task_run.run_count)
                if delay is None:  # jitter: the delay this thread's task run just drew, to the millisecond
                    drawn = getattr(self._drawn, "value", None)
                    if drawn is None:  # measured: scheduled on the virtual clock, the timestamp on the wall clock
                        drawn = (scheduled - state.timestamp).total_seconds() - self.clock.skipped
                    self._drawn.value = None
                    delay = round(max(drawn, 0.0), 3)
                rec.delays.append(delay)
                self._pending.append((scheduled, delay))
        for heard in self.listeners:
            heard()
        if state.name in RETRY_STATES:
            from prefect.context import FlowRunContext

            flow_ctx = FlowRunContext.get()
            if flow_ctx is not None:
                with self.clock.waiting():  # held by the gate: no deadline waits for it meanwhile
                    self.exits.at_retry(flow_ctx.task_runner, task_run.id)
        else:
            self.exits.changed()

    def unfinished(self) -> list[TaskRecord]:
        """Task runs that have started and not reached a final state."""
        with self._lock:
            return [r for r in self.tasks.values() if r.history and r.history[-1][1] not in FINAL_TYPES]

    def current(self) -> TaskRecord | None:
        """The record of the task run executing in this context, if any."""
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        if ctx is None:
            return None
        with self._lock:
            return self.tasks.get(ctx.task_run.id)


def _entered(state: Any, kind: str) -> bool:
    """Whether ``state`` is one that runs hooks of ``kind``."""
    return bool(
        {
            "on_completion": state.is_completed,
            "on_failure": state.is_failed,
            "on_cancellation": state.is_cancelling,  # Prefect runs them on Cancelling only
            "on_crashed": state.is_crashed,
            "on_running": state.is_running,
        }[kind]()
    )
