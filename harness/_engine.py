"""Every hook the harness sets in Prefect's private modules, in one place.

Prefect orchestrates task retries in the client: ``prefect.task_engine`` waits
with its module-level ``time.sleep`` / ``anyio.sleep`` and reports each state
change through its module-level ``emit_task_run_state_change_event``. The
harness swaps those three names for the duration of a scenario: sleeps go to
the virtual clock, and state changes are recorded in-process (the API learns
of task states only later, through events). Retry jitter draws from a
generator seeded by the scenario (``seeded_jitter``). Flow retries are decided by the
server on its own clock, so the runner runs a flow with its retry delay at 0
and ``prefect.flow_engine``'s ``propose_state_sync`` / ``propose_state`` are
wrapped to add the configured delay to the virtual clock when the server
answers ``AwaitingRetry``.
``tests/test_engine_hooks.py`` fails loudly if Prefect moves them.
"""

from __future__ import annotations

import contextlib
import importlib
import random
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from harness.clock import Clock

HOOKED = ("time", "anyio", "emit_task_run_state_change_event", "clamped_poisson_interval")
FLOW_HOOKED = ("propose_state_sync", "propose_state")


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


class _TimeShim(types.ModuleType):
    def __init__(self, clock: Clock, real: types.ModuleType, recorder: Recorder) -> None:
        super().__init__("time")
        self._clock, self._real, self._recorder = clock, real, recorder

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(self._recorder.exact_delay(seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _AnyioShim(types.ModuleType):
    def __init__(self, clock: Clock, real: types.ModuleType, recorder: Recorder) -> None:
        super().__init__("anyio")
        self._clock, self._real, self._recorder = clock, real, recorder

    async def sleep(self, seconds: float) -> None:
        await self._clock.asleep(self._recorder.exact_delay(seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class Recorder:
    """Task runs and their state changes, as the engine reports them; flow states too."""

    def __init__(self, clock: Clock, flow_retry_delay: float = 0.0) -> None:
        self.clock = clock
        self.flow_retry_delay = flow_retry_delay
        self.tasks: dict[Any, TaskRecord] = {}
        self.flow_history: list[tuple[float, str]] = []
        self._pending: list[tuple[Any, float]] = []  # (scheduled_time, delay) of retries not yet waited
        self._lock = threading.Lock()

    def exact_delay(self, seconds: float) -> float:
        """The configured delay of the retry whose wait asks for ``seconds``.

        The engine sleeps ``scheduled_time - now()``, a little less than the
        delay (three 600 s retries would sum to 1799.99 s); the delay itself is
        taken from the AwaitingRetry state, to the millisecond.
        """
        import prefect.types._datetime as dt

        target = dt.now("UTC") + timedelta(seconds=seconds)
        with self._lock:
            for i, (scheduled, delay) in enumerate(self._pending):
                if abs((scheduled - target).total_seconds()) < 0.05:
                    del self._pending[i]
                    return delay
        return seconds

    def record_flow(self, state: Any) -> None:
        self.flow_history.append((self.clock.now(), state.name))
        if state.name == "AwaitingRetry":
            self.clock.sleep(self.flow_retry_delay)

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
                delay = _configured_delay(rec.task, task_run.run_count)
                if delay is None:  # jitter: the drawn delay, measured to the millisecond
                    delay = round(max((scheduled - state.timestamp).total_seconds(), 0.0), 3)
                rec.delays.append(delay)
                self._pending.append((scheduled, delay))

    def current(self) -> TaskRecord | None:
        """The record of the task run executing in this context, if any."""
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        if ctx is None:
            return None
        with self._lock:
            return self.tasks.get(ctx.task_run.id)


@contextlib.contextmanager
def hooked(clock: Clock, recorder: Recorder, seed: int = 0) -> Iterator[None]:
    """Swap the task engine's sleeps and state-change reporting for the harness's."""
    engine: Any = importlib.import_module("prefect.task_engine")
    saved = {name: getattr(engine, name) for name in HOOKED}
    emit: Callable[..., Any] = saved["emit_task_run_state_change_event"]

    def emit_and_record(*, task_run: Any, initial_state: Any, validated_state: Any, follows: Any = None) -> Any:
        recorder.record(task_run, validated_state)
        return emit(task_run=task_run, initial_state=initial_state, validated_state=validated_state, follows=follows)

    flow_engine: Any = importlib.import_module("prefect.flow_engine")
    flow_saved = {name: getattr(flow_engine, name) for name in FLOW_HOOKED}

    def propose_sync(*args: Any, **kwargs: Any) -> Any:
        state = flow_saved["propose_state_sync"](*args, **kwargs)
        recorder.record_flow(state)
        return state

    async def propose(*args: Any, **kwargs: Any) -> Any:
        state = await flow_saved["propose_state"](*args, **kwargs)
        recorder.record_flow(state)
        return state

    engine.time = _TimeShim(clock, saved["time"], recorder)
    engine.anyio = _AnyioShim(clock, saved["anyio"], recorder)
    engine.emit_task_run_state_change_event = emit_and_record
    engine.clamped_poisson_interval = seeded_jitter(random.Random(f"{seed}:jitter"))
    flow_engine.propose_state_sync = propose_sync
    flow_engine.propose_state = propose
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(engine, name, value)
        for name, value in flow_saved.items():
            setattr(flow_engine, name, value)


def seeded_jitter(rng: random.Random) -> Callable[..., float]:
    """Prefect's own ``clamped_poisson_interval``, drawing from ``rng`` instead of the global ``random``.

    Retry jitter drew from the global ``random``, which Prefect's background
    threads also draw from: the same seed gave different delays. The function
    is Prefect's code, run with its module's ``random`` bound to the scenario's
    generator.
    """
    import prefect.utilities.math as prefect_math

    namespace = {**vars(prefect_math), "random": rng}
    for name in ("poisson_interval", "clamped_poisson_interval"):
        original = getattr(prefect_math, name)
        namespace[name] = types.FunctionType(original.__code__, namespace, name, original.__defaults__)
    return namespace["clamped_poisson_interval"]  # type: ignore[no-any-return]


def timeout_error(seconds: float) -> BaseException:
    """The exception Prefect's own task timeout raises."""
    from prefect.task_engine import TaskRunTimeoutError

    return TaskRunTimeoutError(f"Scope timed out after {seconds} second(s).")


class _SslShim(types.ModuleType):
    """``ssl`` for Prefect's API client: one context per set of arguments, built once.

    Prefect builds a verifying context (loading the CA bundle, ~50 ms) for every
    client it opens; the harness's API is plain HTTP on loopback, so the context
    is never used for a handshake.
    """

    def __init__(self, real: types.ModuleType) -> None:
        super().__init__("ssl")
        self._real = real
        self._cache: dict[tuple[Any, ...], Any] = {}

    def create_default_context(self, *args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in self._cache:
            self._cache[key] = self._real.create_default_context(*args, **kwargs)
        return self._cache[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def share_api_ssl_context() -> Callable[[], None]:
    """Give Prefect's API clients a shared SSL context for the session; returns the undo."""
    orchestration: Any = importlib.import_module("prefect.client.orchestration")
    real = orchestration.ssl
    if isinstance(real, _SslShim):
        return lambda: None
    orchestration.ssl = _SslShim(real)

    def undo() -> None:
        orchestration.ssl = real

    return undo
