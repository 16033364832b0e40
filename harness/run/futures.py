"""Submitted task runs, their waiters and the flow's exit: the races Prefect leaves to real time, pinned.

``pinned_exit`` hooks ``ThreadPoolTaskRunner.submit`` and ``__exit__`` and
what waits on a ``PrefectConcurrentFuture`` (``wait``, ``result``, done
callbacks, ``future.state``, ``prefect.futures``' events): each submitted task
run gets a clock line of its own, its waiters join it, and the flow run's
exit (Prefect's cancellation of what it did not wait on) happens once nothing
submitted can make progress before it (``exits``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

from harness.run.clock import Line
from harness.run.internals import FE, FU, TR, Via, replace, wrap
from harness.run.states import Recorder


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
        line = clock.line()  # the flow run's: once its function has returned, it starts nothing more
        line.returned = False  # a flow retry calls it again, on the same line

        def returned() -> None:
            gate.returned(runner)
            line.returned = True

        try:
            value = call(fn, parameters)
        except BaseException:
            returned()
            raise
        if not inspect.isawaitable(value):
            returned()
            return value

        async def awaited() -> Any:
            try:
                return await value
            finally:
                returned()

        return awaited()

    lines: dict[Any, Line] = {}  # task run id -> the line forked for its future at submit

    def submit_and_register(self: Any, *args: Any, **kwargs: Any) -> Any:
        submitted: list[Any] = []  # Prefect copies the context in ``submit``: the task run starts on this line
        line = clock.fork(counted=True, queued=lambda: bool(submitted) and gate.queued(self, submitted[0]))
        # A worker is free at this virtual instant when fewer task runs than workers are still running at it
        # (one that ended in real time after a wait may still be running in virtual time): the task run
        # starts now, whichever thread the pool hands it to.
        workers, earlier = gate.pool(self)
        running = [
            ln for i in earlier if (ln := lines.get(i)) is not None and not (ln.ended and ln.offset <= line.offset)
        ]
        line.free_worker = len(running) < workers
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
        wrap(stack, f"{FU}:threading", lambda real: Via(real, "Event", Event))
        yield
