"""Every hook the harness sets in Prefect's private modules, in one place.

Prefect orchestrates task retries in the client: ``prefect.task_engine`` waits
with its module-level ``time.sleep`` / ``anyio.sleep`` and reports each state
change through its module-level ``emit_task_run_state_change_event``. The
harness swaps those three names, and nothing else, for the duration of a
scenario: sleeps go to the virtual clock, and state changes are recorded
in-process (the API learns of task states only later, through events).
``tests/test_engine_hooks.py`` fails loudly if Prefect moves them.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.clock import Clock

HOOKED = ("time", "anyio", "emit_task_run_state_change_event")


@dataclass(slots=True)
class TaskRecord:
    """What the harness saw of one task run, in the order runs started."""

    id: Any
    name: str
    task: Any = None
    history: list[tuple[float, str, str]] = field(default_factory=list)  # (virtual s, type, name)
    run_count: int = 0
    message: str | None = None
    attempt_started: float = 0.0
    delays: list[float] = field(default_factory=list)


class _TimeShim(types.ModuleType):
    def __init__(self, clock: Clock, real: types.ModuleType) -> None:
        super().__init__("time")
        self._clock, self._real = clock, real

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _AnyioShim(types.ModuleType):
    def __init__(self, clock: Clock, real: types.ModuleType) -> None:
        super().__init__("anyio")
        self._clock, self._real = clock, real

    async def sleep(self, seconds: float) -> None:
        await self._clock.asleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class Recorder:
    """Task runs and their state changes, as the engine reports them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tasks: dict[Any, TaskRecord] = {}
        self._lock = threading.Lock()

    def record(self, task_run: Any, state: Any) -> None:
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        task = ctx.task if ctx is not None and ctx.task_run.id == task_run.id else None
        with self._lock:
            rec = self.tasks.get(task_run.id)
            if rec is None:
                name = task.name if task is not None else task_run.name.rsplit("-", 1)[0]
                rec = self.tasks[task_run.id] = TaskRecord(task_run.id, name, task)
            elif task is not None and rec.task is None:
                rec.task, rec.name = task, task.name
            now = self.clock.now()
            rec.history.append((now, state.type.value, state.name))
            rec.run_count = task_run.run_count
            rec.message = state.message
            if state.is_running():
                rec.attempt_started = now
            scheduled = state.state_details.scheduled_time
            if state.name == "AwaitingRetry" and scheduled is not None:
                rec.delays.append(max((scheduled - state.timestamp).total_seconds(), 0.0))

    def current(self) -> TaskRecord | None:
        """The record of the task run executing in this context, if any."""
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        if ctx is None:
            return None
        with self._lock:
            return self.tasks.get(ctx.task_run.id)


@contextlib.contextmanager
def hooked(clock: Clock, recorder: Recorder) -> Iterator[None]:
    """Swap the task engine's sleeps and state-change reporting for the harness's."""
    import prefect.task_engine as engine

    saved = {name: getattr(engine, name) for name in HOOKED}
    emit: Callable[..., Any] = saved["emit_task_run_state_change_event"]

    def emit_and_record(*, task_run: Any, initial_state: Any, validated_state: Any, follows: Any = None) -> Any:
        recorder.record(task_run, validated_state)
        return emit(task_run=task_run, initial_state=initial_state, validated_state=validated_state, follows=follows)

    engine.time = _TimeShim(clock, saved["time"])  # type: ignore[assignment]
    engine.anyio = _AnyioShim(clock, saved["anyio"])  # type: ignore[assignment]
    engine.emit_task_run_state_change_event = emit_and_record  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(engine, name, value)


def timeout_error(seconds: float) -> BaseException:
    """The exception Prefect's own task timeout raises."""
    from prefect.task_engine import TaskRunTimeoutError

    return TaskRunTimeoutError(f"Scope timed out after {seconds} second(s).")
