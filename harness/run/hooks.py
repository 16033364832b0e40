"""What the harness puts in place of Prefect's internals for a run, each undone afterwards.

The internals themselves, where they live and why each is touched, are the
table in ``harness.run.internals``; every replacement here goes through its
``replace`` / ``wrap``.

Per scenario (``hooked``): Prefect orchestrates task retries in the client,
and ``prefect.task_engine`` waits with its module-level ``time.sleep`` /
``anyio.sleep``, reports each state change through its module-level
``emit_task_run_state_change_event`` and draws retry jitter with
``clamped_poisson_interval``. The harness swaps those four names: sleeps go
to the virtual clock, state changes are recorded in-process (``states``),
and jitter draws from a generator seeded by the scenario (``seeded_jitter``).
Flow retries are decided by the server on its own clock, so every flow run
(subflows too) runs with its retry delay at 0 (``virtual_flow_retries``) and
``prefect.flow_engine``'s ``propose_state_sync`` / ``propose_state`` are
wrapped to add the configured delay to the virtual clock when the server
answers ``AwaitingRetry``. A flow's ``timeout_seconds`` is kept on the
virtual clock too (``virtual_flow_timeouts``), and the task engine and
result store read "now" on it (``virtual_now``), so that cache expiry
sees the time the skipped waits stand for.

Per scenario too (``own_results``): a result storage of its own, so that no
task cache of another scenario serves it.

Per run, built once per session (``SharedSsl``): one SSL context for
Prefect's API clients and one for httpx's default clients, instead of one per
client.

``tests/test_internals.py`` fails naming the entry if Prefect moves a hooked
name; ``tests/test_engine_hooks.py`` checks that the process is as before
once the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import random
import types
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from harness.run.clock import Clock
from harness.run.deadlines import virtual_flow_timeouts
from harness.run.futures import pinned_exit
from harness.run.internals import CB, FE, TE, Via, replace, replaced, wrap
from harness.run.states import Recorder


class _TimeShim(types.ModuleType):
    def __init__(self, clock: Clock, real: types.ModuleType, recorder: Recorder | None) -> None:
        super().__init__("time")
        self._clock, self._real, self._recorder = clock, real, recorder

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(self._recorder.exact_delay(seconds) if self._recorder is not None else seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _AnyioShim(types.ModuleType):
    def __init__(self, clock: Clock, real: types.ModuleType, recorder: Recorder | None) -> None:
        super().__init__("anyio")
        self._clock, self._real, self._recorder = clock, real, recorder

    async def sleep(self, seconds: float) -> None:
        await self._clock.asleep(self._recorder.exact_delay(seconds) if self._recorder is not None else seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def hooked(clock: Clock, recorder: Recorder, seed: int = 0) -> Iterator[None]:
    """Swap the task engine's sleeps, state reports and jitter, and pin the flow's exit, for one scenario."""
    jitter = seeded_jitter(random.Random(f"{seed}:jitter"))

    def jitter_and_record(*args: Any, **kwargs: Any) -> float:
        delay = jitter(*args, **kwargs)
        recorder.drew(delay)
        return delay

    with contextlib.ExitStack() as stack:  # every replacement undone, in reverse order, however the block ends
        wrap(stack, f"{TE}:time", lambda real: _TimeShim(clock, real, recorder))
        wrap(stack, f"{TE}:anyio", lambda real: _AnyioShim(clock, real, recorder))
        wrap(stack, f"{TE}:emit_task_run_state_change_event", lambda emit: _recording_emit(emit, recorder))
        replace(stack, f"{TE}:clamped_poisson_interval", jitter_and_record)
        wrap(stack, f"{FE}:propose_state_sync", lambda propose: _recording_propose(propose, recorder))
        wrap(stack, f"{FE}:propose_state", lambda propose: _recording_propose(propose, recorder))
        _counted_hooks(stack, recorder)
        stack.enter_context(virtual_flow_retries(recorder))
        stack.enter_context(forked_task_runs(clock))
        stack.enter_context(pinned_exit(recorder))
        stack.enter_context(virtual_flow_timeouts(recorder))
        stack.enter_context(virtual_now(clock))
        yield


def virtual_client_waits(stack: contextlib.ExitStack, clock: Clock, seed: int) -> None:
    """Prefect's API client waits between its own retries (``_send_with_retry``) on the virtual clock, its jitter
    drawn from the scenario's seed: for a run that faults Prefect's API (``injector.PrefectApi``). Another run's
    client retries only the session server's own hiccups, which are no part of the scenario: they wait for real."""
    wrap(stack, f"{CB}:time", lambda real: _TimeShim(clock, real, None))
    wrap(stack, f"{CB}:anyio", lambda real: _AnyioShim(clock, real, None))
    client_rng = random.Random(f"{seed}:client jitter")
    for name in ("clamped_poisson_interval", "bounded_poisson_interval"):
        replace(stack, f"{CB}:{name}", seeded_jitter(client_rng, name))


_CALLING_HOOKS: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "harness_calling_hooks", default=None
)


def _counted_hooks(stack: contextlib.ExitStack, recorder: Recorder) -> None:
    """Every state hook Prefect calls, recorded with its kind (``expect.hooks``).

    The engines' ``call_hooks`` choose the hooks for a state and ask
    ``get_hook_name`` for each one's name just before calling it: the first
    says which engine and state, the second which hook.
    """

    def calling(call_hooks: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(call_hooks):

            async def acall(self: Any, state: Any = None) -> Any:
                token = _CALLING_HOOKS.set((self, state if state is not None else self.state))
                try:
                    return await call_hooks(self, state)
                finally:
                    _CALLING_HOOKS.reset(token)

            return acall

        def call(self: Any, state: Any = None) -> Any:
            token = _CALLING_HOOKS.set((self, state if state is not None else self.state))
            try:
                return call_hooks(self, state)
            finally:
                _CALLING_HOOKS.reset(token)

        return call

    def noting(get_hook_name: Callable[[Any], str]) -> Callable[[Any], str]:
        def hook_name(hook: Any) -> str:
            calling_now = _CALLING_HOOKS.get()
            if calling_now is not None:
                recorder.hook_ran(*calling_now, hook)
            return get_hook_name(hook)

        return hook_name

    for module, engines in (
        (TE, ("SyncTaskRunEngine", "AsyncTaskRunEngine")),
        (FE, ("FlowRunEngine", "AsyncFlowRunEngine")),
    ):
        wrap(stack, f"{module}:get_hook_name", noting)
        for engine in engines:
            wrap(stack, f"{module}:{engine}.call_hooks", calling)


def _recording_emit(emit: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    def emit_and_record(*, task_run: Any, initial_state: Any, validated_state: Any, follows: Any = None) -> Any:
        recorder.record(task_run, validated_state)
        return emit(task_run=task_run, initial_state=initial_state, validated_state=validated_state, follows=follows)

    return emit_and_record


def _recording_propose(propose: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(propose):

        async def propose_and_record(*args: Any, **kwargs: Any) -> Any:
            state = await propose(*args, **kwargs)
            recorder.record_flow(state)
            return state

        return propose_and_record

    def propose_sync_and_record(*args: Any, **kwargs: Any) -> Any:
        state = propose(*args, **kwargs)
        recorder.record_flow(state)
        return state

    return propose_sync_and_record


@contextlib.contextmanager
def virtual_flow_retries(recorder: Recorder) -> Iterator[None]:
    """Every flow run, subflows included, waits its retry delay on the virtual clock.

    Flow retries are decided by the server on its own clock: a flow run
    waiting for its retry would wait for real. ``flow_engine.run_flow`` (which
    ``Flow.__call__`` imports at each call) runs the flow with its retry delay
    at 0, and the recorder adds the configured delay to the virtual clock when
    the server answers ``AwaitingRetry`` to that flow run.
    """
    clock = recorder.clock
    run_flow: Callable[..., Any]

    def with_virtual_delay(flow: Any, *args: Any, **kwargs: Any) -> Any:
        delay = float(flow.retry_delay_seconds or 0)
        if flow.retries and delay:
            flow = flow.with_options(retry_delay_seconds=0)
        parent, line = clock.line(), clock.fork()  # a flow run starts where its caller is
        token, entered = recorder.flow_retry_delay.set(delay), clock.entered(line)
        blocked = not getattr(flow, "isasync", False)  # a sync flow run: its caller is blocked until it returns
        if blocked:
            clock.wait_for(parent, line)
        result: Any = None
        try:
            result = run_flow(flow, *args, **kwargs)
        finally:
            if blocked:
                clock.stop_waiting(parent, line)
            clock.left(entered)
            recorder.flow_retry_delay.reset(token)
            if not inspect.isawaitable(result):
                clock.join(line, into=parent)
        if not inspect.isawaitable(result):
            return result

        async def awaited() -> Any:
            line.task = asyncio.current_task()
            token, entered = recorder.flow_retry_delay.set(delay), clock.entered(line)
            try:
                return await result
            finally:
                clock.left(entered)
                recorder.flow_retry_delay.reset(token)
                clock.join(line, into=parent)

        return awaited()

    with replaced(f"{FE}:run_flow", with_virtual_delay) as run_flow:
        yield


@contextlib.contextmanager
def forked_task_runs(clock: Clock) -> Iterator[None]:
    """Every task run waits on a line of its own, forked from its caller's, and joined back when it ends.

    A task run called directly returns to its caller, whose line moves to the
    task run's end; a submitted one joins the line forked for its future at
    ``submit`` (``pinned_exit``), which its waiter joins. Hooked at the task
    engines' ``start``, which every task run (sync, async, generator) enters
    once and leaves once.
    """
    sync_start: Callable[..., Any]
    async_start: Callable[..., Any]

    @contextlib.contextmanager
    def forked(self: Any, *args: Any, **kwargs: Any) -> Iterator[None]:
        parent, line = clock.line(), clock.fork(counted=True)
        direct = parent.queued is None  # called, not submitted: its caller is blocked until it returns
        if direct:
            clock.wait_for(parent, line)
        token = clock.entered(line)
        try:
            with sync_start(self, *args, **kwargs):
                yield
        finally:
            clock.left(token)
            if direct:
                clock.stop_waiting(parent, line)
            clock.end(line)
            clock.join(line, into=parent)

    @contextlib.asynccontextmanager
    async def aforked(self: Any, *args: Any, **kwargs: Any) -> Any:
        parent, line = clock.line(), clock.fork(counted=True)
        line.task = asyncio.current_task()
        token = clock.entered(line)
        try:
            async with async_start(self, *args, **kwargs):
                yield
        finally:
            clock.left(token)
            clock.end(line)
            if _awaited_by(line.task, parent.task):  # not a task created and left running
                clock.join(line, into=parent)

    with contextlib.ExitStack() as stack:
        sync_start = replace(stack, f"{TE}:SyncTaskRunEngine.start", forked)
        async_start = replace(stack, f"{TE}:AsyncTaskRunEngine.start", aforked)
        yield


def _awaited_by(child: Any, parent: Any) -> bool:
    """Whether the asyncio task ``parent`` awaits ``child`` as it ends: the same task (``await a_task()``), the
    child itself (``await asyncio.create_task(...)``) or a gather of it. A task created and left running (or
    cancelled) is not: its end does not move its creator's time."""
    if parent is None or child is None or parent is child:
        return True
    waiter = getattr(parent, "_fut_waiter", None)
    return waiter is child or child in getattr(waiter, "_children", ())


class _ShiftedDatetime(types.ModuleType):
    """``prefect.types._datetime`` whose ``now`` reads the virtual clock: wall time plus what was skipped."""

    def __init__(self, clock: Clock, real: types.ModuleType) -> None:
        super().__init__(real.__name__)
        self._clock, self._real = clock, real

    def now(self, tz: Any = "UTC") -> Any:
        return self._real.now(tz) + timedelta(seconds=self._clock.skipped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def virtual_now(clock: Clock) -> Iterator[None]:
    """The task engine and result store read "now" on the virtual clock, as a real wait would have moved it.

    Both read ``prefect.types._datetime.now`` through the ``prefect`` name of
    their own module: retry schedules (``scheduled_time`` and the wait until
    it) and task cache expiry (written as now + ``cache_expiration``, then
    compared with now). With retry delays skipped, a cache would never expire
    across them; the two modules' ``prefect`` is given a view whose
    ``types._datetime.now`` adds the skipped seconds, nothing else changed.
    """
    import prefect
    import prefect.types
    import prefect.types._datetime as real_datetime

    view = Via(prefect, "types", Via(prefect.types, "_datetime", _ShiftedDatetime(clock, real_datetime)))
    with contextlib.ExitStack() as stack:
        for module in (TE, "prefect.results"):
            replace(stack, f"{module}:prefect", view)
        yield


def seeded_jitter(rng: random.Random, name: str = "clamped_poisson_interval") -> Callable[..., float]:
    """Prefect's own ``clamped_poisson_interval`` (or ``bounded_poisson_interval``), drawing from ``rng`` instead
    of the global ``random``.

    Retry jitter drew from the global ``random``, which Prefect's background
    threads also draw from: the same seed gave different delays. The function
    is Prefect's code, run with its module's ``random`` bound to the scenario's
    generator.
    """
    import prefect.utilities.math as prefect_math

    namespace = {**vars(prefect_math), "random": rng}
    for each in ("poisson_interval", "clamped_poisson_interval", "bounded_poisson_interval"):
        original = getattr(prefect_math, each)
        namespace[each] = types.FunctionType(original.__code__, namespace, each, original.__defaults__)
    return namespace[name]  # type: ignore[no-any-return]


def timeout_error(seconds: float) -> BaseException:
    """The exception Prefect's own task timeout raises."""
    from prefect.task_engine import TaskRunTimeoutError

    return TaskRunTimeoutError(f"Scope timed out after {seconds} second(s).")
