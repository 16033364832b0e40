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
import functools
import inspect
import random
import shutil
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness.run.clock import Clock, Line
from harness.run.internals import FE, FU, TE, TR, replace, replaced, wrap
from harness.run.states import Recorder


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
        stack.enter_context(virtual_flow_retries(recorder))
        stack.enter_context(forked_task_runs(clock))
        stack.enter_context(pinned_exit(recorder))
        stack.enter_context(virtual_flow_timeouts(recorder))
        stack.enter_context(virtual_now(clock))
        yield


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
        result: Any = None
        try:
            result = run_flow(flow, *args, **kwargs)
        finally:
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


@contextlib.contextmanager
def virtual_flow_timeouts(recorder: Recorder) -> Iterator[None]:
    """A flow's ``timeout_seconds`` kept on the virtual clock as well as on the wall clock.

    Prefect enforces a flow's timeout with a cancel scope on real time (an
    alarm, a watcher thread or an anyio deadline); the task retry delays the
    harness skips would never reach it. The scope Prefect opens for a flow run
    (``prefect.utilities.timeout``'s ``cancel_sync_after`` / ``cancel_async_after``,
    entered by ``flow_engine.timeout`` / ``timeout_async``) is also set on the
    virtual clock, which cancels it through Prefect's own ``scope.cancel()``
    once the flow run has waited ``timeout_seconds`` (the compute aside): the
    flow times out where it would have, in Prefect's own way.
    """
    clock = recorder.clock
    opening = contextvars.ContextVar("harness_flow_timeout", default=False)

    def flagged(original: Callable[..., Any]) -> Callable[..., Any]:
        @contextlib.contextmanager
        def flow_timeout(*args: Any, **kwargs: Any) -> Iterator[None]:
            token = opening.set(True)  # the cancel scope opened now is the flow run's
            entered = False
            try:
                with original(*args, **kwargs):
                    opening.reset(token)
                    entered = True
                    yield
            finally:
                if not entered:
                    opening.reset(token)

        return flow_timeout

    def registering(original: Callable[..., Any]) -> Callable[..., Any]:
        @contextlib.contextmanager
        def cancel_after(timeout: float | None, name: str | None = None) -> Iterator[Any]:
            with original(timeout, name=name) as scope:
                if not (opening.get() and timeout):
                    yield scope
                    return
                over = threading.Event()  # the flow run's scope has exited: the timeout took effect, or none came
                exiting = threading.Lock()

                def fire() -> None:
                    # Never after the scope has exited (its alarm handler is gone: SIGALRM would end the process),
                    # nor when Prefect's own timer got there first.
                    with exiting:
                        if not over.is_set() and not scope.cancelled():
                            scope.cancel()

                hold, ahold, parked = _held_until_cancelled(recorder, over)
                forget = clock.after(timeout, fire, hold=hold, ahold=ahold, parked=parked)
                try:
                    yield scope
                finally:
                    try:
                        with exiting:
                            over.set()
                    finally:
                        over.set()
                        forget()

        return cancel_after

    with contextlib.ExitStack() as stack:
        for name in ("timeout", "timeout_async"):
            wrap(stack, f"{FE}:{name}", flagged)
        for name in ("cancel_sync_after", "cancel_async_after"):
            wrap(stack, f"prefect.utilities.timeout:{name}", registering)
        yield


HOLD_S = 5.0  # at most this long (real time) a participant waits at a fired deadline for Prefect's cancellation


def _held_until_cancelled(
    recorder: Recorder, over: threading.Event
) -> tuple[Callable[[], None], Callable[[], Any], Callable[[], Any]]:
    """What a task run reaching its flow's fired deadline waits for: Prefect's cancellation reaching it.

    In real time it would still be sleeping when the flow run times out. A
    task run submitted to the thread pool waits for its cancel event, which
    Prefect sets as the flow run's task runner exits (the exit gate counts it
    as settled meanwhile), then goes on to find it set before its next
    attempt. A coroutine in the flow's event loop yields until the flow
    run's cancellation reaches it (a ``CancelledError`` at its await). Either
    way no longer than ``HOLD_S``, nor past the flow run's scope exiting
    without a cancellation for it. The third call returned (``parked``) marks
    a task run waiting at the deadline as settled for the exit gate.
    """

    def cancel_event() -> tuple[Any, Any, Any]:
        from prefect.context import FlowRunContext, TaskRunContext

        flow_ctx, task_ctx = FlowRunContext.get(), TaskRunContext.get()
        runner = flow_ctx.task_runner if flow_ctx is not None else None
        task_run_id = task_ctx.task_run.id if task_ctx is not None else None
        return runner, task_run_id, getattr(runner, "_cancel_events", {}).get(task_run_id)

    def hold() -> None:
        runner, task_run_id, event = cancel_event()
        if event is not None:
            recorder.exits.held(runner, task_run_id, event, HOLD_S)
        else:
            over.wait(HOLD_S)

    async def ahold() -> None:
        runner, task_run_id, event = cancel_event()
        until = time.monotonic() + HOLD_S
        after_over: float | None = None
        with recorder.exits.parked(task_run_id):
            while time.monotonic() < until and not (event is not None and event.is_set()):
                if over.is_set() and event is None:
                    after_over = after_over or time.monotonic() + 0.2
                    if time.monotonic() > after_over:
                        return
                await asyncio.sleep(0.001)

    def parked() -> Any:
        _, task_run_id, _ = cancel_event()
        return recorder.exits.parked(task_run_id)

    return hold, ahold, parked


class _ShiftedDatetime(types.ModuleType):
    """``prefect.types._datetime`` whose ``now`` reads the virtual clock: wall time plus what was skipped."""

    def __init__(self, clock: Clock, real: types.ModuleType) -> None:
        super().__init__(real.__name__)
        self._clock, self._real = clock, real

    def now(self, tz: Any = "UTC") -> Any:
        return self._real.now(tz) + timedelta(seconds=self._clock.skipped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Via(types.ModuleType):
    """A module as another module sees it: one attribute replaced, every other one the real module's."""

    def __init__(self, real: types.ModuleType, name: str, value: Any) -> None:
        super().__init__(real.__name__)
        self._real, self._name, self._value = real, name, value

    def __getattr__(self, name: str) -> Any:
        return self._value if name == self._name else getattr(self._real, name)


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

    view = _Via(prefect, "types", _Via(prefect.types, "_datetime", _ShiftedDatetime(clock, real_datetime)))
    with contextlib.ExitStack() as stack:
        for module in (TE, "prefect.results"):
            replace(stack, f"{module}:prefect", view)
        yield


@contextlib.contextmanager
def pinned_exit(recorder: Recorder) -> Iterator[None]:
    """Pin the race between a flow's exit and the task runs it submitted and did not wait on (``exits``).

    Marks the flow function's return (``flow_engine.call_with_parameters``),
    registers each submitted future (``ThreadPoolTaskRunner.submit``), notes
    what waits on which future (``PrefectConcurrentFuture.wait``, ``result``
    and the done callbacks ``prefect.futures.wait`` and ``as_completed``
    register), and lets ``ThreadPoolTaskRunner.__exit__``, Prefect's own
    cancellation, run once nothing submitted can make progress before it.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    gate, clock = recorder.exits, recorder.clock
    stack = contextlib.ExitStack()
    call: Callable[..., Any]
    submit: Callable[..., Any]
    exit_: Callable[..., Any]
    state: Any
    callback_waiting: Callable[..., Any]

    def call_and_mark(fn: Any, parameters: Any) -> Any:
        ctx = FlowRunContext.get()
        runner = ctx.task_runner if ctx is not None else None
        try:
            value = call(fn, parameters)
        except BaseException:
            gate.returned(runner)
            raise
        if not inspect.isawaitable(value):
            gate.returned(runner)
            return value

        async def awaited() -> Any:
            try:
                return await value
            finally:
                gate.returned(runner)

        return awaited()

    lines: dict[Any, Line] = {}  # task run id -> the line forked for its future at submit

    def submit_and_register(self: Any, *args: Any, **kwargs: Any) -> Any:
        submitted: list[Any] = []  # Prefect copies the context in ``submit``: the task run starts on this line
        line = clock.fork(counted=True, queued=lambda: bool(submitted) and gate.queued(self, submitted[0]))
        token = clock.entered(line)
        try:
            future = submit(self, *args, **kwargs)
        finally:
            clock.left(token)
        lines[future.task_run_id] = line
        submitted.append(future.task_run_id)
        recorder.submitted(future.task_run_id)
        gate.submitted(self, future.task_run_id, future.wrapped_future)
        return future

    def settled_exit(self: Any, *exc: Any) -> None:
        try:
            gate.settle(self)
        finally:
            try:
                exit_(self, *exc)
            finally:
                gate.cancelled(self)

    def waiting(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            ctx = TaskRunContext.get()
            done = gate.waiting(ctx.task_run.id if ctx is not None else None, self.task_run_id)
            line = lines.get(self.task_run_id)
            try:
                with clock.waiting(on=(line,) if line is not None else ()):
                    return original(self, *args, **kwargs)
            finally:
                done()
                if line is not None and self.wrapped_future.done():  # the waiter has seen it finish
                    clock.join(line)

        return wrapper

    polled: set[Any] = set()  # futures whose state the flow has read while they ran

    def state_read(self: Any) -> Any:
        """``future.state``, read from the API: read twice while the task run is unfinished, the flow polls it
        (a wait, as in ``wait()``); once, it only looks. The reader joins the task run's line once it is done."""
        ctx = TaskRunContext.get()
        line = lines.get(self.task_run_id)
        polling = self.task_run_id in polled
        done = gate.waiting(ctx.task_run.id if ctx is not None else None, self.task_run_id) if polling else None
        try:
            return state.fget(self)
        finally:
            if done is not None:
                done()
            if self.wrapped_future.done():
                if line is not None:
                    clock.join(line)
            else:
                polled.add(self.task_run_id)

    def called_back(self: Any, fn: Callable[..., Any]) -> Any:
        """A done callback (``as_completed``, ``wait(timeout=...)``, ``.map(...).result()``): its registrant blocks
        until one of the futures it registered on is done."""
        waiter, line = clock.line(), lines.get(self.task_run_id)
        if line is None:
            return callback_waiting(self, fn)
        waiter.called_back.append(line)

        def fired(future: Any) -> Any:
            if line in waiter.called_back:
                waiter.called_back.remove(line)
            return fn(future)

        return callback_waiting(self, fired)

    class Event(threading.Event):
        """``prefect.futures``' events (``as_completed``, ``wait(timeout=...)``): waiting on one, the caller is
        blocked until a future it registered a done callback on is done."""

        def wait(self, timeout: float | None = None) -> bool:
            waiter = clock.line()
            pending = tuple(waiter.called_back)
            if not pending:
                return super().wait(timeout)
            with clock.waiting(on=pending):
                return super().wait(timeout)

    with stack:
        call = replace(stack, f"{FE}:call_with_parameters", call_and_mark)
        submit = replace(stack, f"{TR}:ThreadPoolTaskRunner.submit", submit_and_register)
        exit_ = replace(stack, f"{TR}:ThreadPoolTaskRunner.__exit__", settled_exit)
        wrap(stack, f"{FU}:PrefectConcurrentFuture.wait", waiting)
        wrap(stack, f"{FU}:PrefectConcurrentFuture.result", waiting)
        # Reading ``future.state`` (from the API, until the future is done) is a flow polling its task runs:
        # a wait too, as real time passes between the reads. The property itself is kept, not a read of it.
        state = replace(stack, f"{FU}:PrefectConcurrentFuture.state", property(state_read))
        callback_waiting = waiting(
            replace(stack, f"{FU}:PrefectConcurrentFuture._add_prefect_done_callback", called_back)
        )
        wrap(stack, f"{FU}:threading", lambda real: _Via(real, "Event", Event))
        yield


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


@contextlib.contextmanager
def own_results() -> Iterator[Path]:
    """A result storage of the scenario's own: no cache record or persisted result of another scenario.

    Prefect keeps task cache records and persisted results in
    ``PREFECT_RESULTS_LOCAL_STORAGE_PATH`` (by default under ``PREFECT_HOME``),
    shared by every flow run that uses it; a second scenario with the same
    inputs would be served from the first one's cache, with no call at all.
    The folder is removed afterwards, and Prefect's cache of storage objects
    forgets it. When the session already points the setting at a folder of
    its own (``harness-results-*``, set once: a copy of Prefect's settings
    costs as much CPU as the rest of a run), that folder is used and emptied
    after the run instead: each run still starts with no record.
    """
    from prefect.results import _default_storages
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    current = PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()
    if current is not None and Path(current).name.startswith("harness-results-") and Path(current).is_dir():
        current = Path(current)
        try:
            yield current
        finally:
            for key in [k for k in _default_storages if k[1] == str(current)]:
                del _default_storages[key]
            shutil.rmtree(current, ignore_errors=True)
            current.mkdir()
        return
    path = Path(tempfile.mkdtemp(prefix="harness-results-"))
    try:
        with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: path}):
            yield path
    finally:
        for key in [k for k in _default_storages if k[1] == str(path)]:
            del _default_storages[key]
        shutil.rmtree(path, ignore_errors=True)


class SharedSsl:
    """One SSL context per session for Prefect's API clients and httpx's default clients, installed per run.

    No TLS handshake happens on the loopback API or under respx, yet every
    client would load the CA bundle again (tens of milliseconds each). The
    contexts are built during a run (the session's CA trusted) and kept for the
    next; outside a run the real functions are back in place.
    """

    def __init__(self) -> None:
        self._ssl: dict[Any, Any] = {}
        self._create: dict[Any, Any] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:  # built once a session (Prefect's, httpx's functions as they are then)
            wrap(stack, "prefect.client.orchestration:ssl", lambda real: _cached(self._ssl, real, _SslShim))
            wrap(
                stack,
                "httpx._transports.default:create_ssl_context",
                lambda real: _cached(self._create, real, _shared_ssl_context),
            )
            yield


def _cached(cache: dict[Any, Any], real: Any, make: Callable[[Any], Any]) -> Any:
    if real not in cache:
        cache[real] = make(real)
    return cache[real]


def _shared_ssl_context(create: Callable[..., Any]) -> Callable[..., Any]:
    """httpx's ``create_ssl_context``, built once per set of default arguments."""

    @functools.cache
    def default_context(trust_env: bool) -> Any:
        return create(verify=True, cert=None, trust_env=trust_env)

    @functools.wraps(create)
    def shared(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is True and cert is None:
            return default_context(trust_env)
        return create(verify=verify, cert=cert, trust_env=trust_env)

    return shared
