"""A flow's ``timeout_seconds`` on the virtual clock, fired through Prefect's own cancel scope.

Prefect enforces a flow's timeout on real time, which the task retry delays
the harness skips would never reach. The scope Prefect opens for a flow run
is also set on the virtual clock (``virtual_flow_timeouts``); a participant
that reaches the fired deadline waits there until Prefect's cancellation
reaches it (``_held_until_cancelled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from harness.run.internals import FE, wrap
from harness.run.states import Recorder


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
