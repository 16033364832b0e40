"""Points in a flow run where something happens to it: the process dies (``crash:``), the run is cancelled
(``cancel:``).

A point names the N-th run of a task in the order the flow called or
submitted its runs (the order ``expect.tasks`` lists them in, and the crash
sweep numbers them in); a run that never reaches the point (it failed before
returning, or was served from a cache) is not another's turn. The points are
met inside Prefect's task engine, each wrapped method an entry in
``harness.run.internals``; ``after_call`` is met as the injector logs a call,
``at_time`` as the run's virtual clock reaches it.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

from harness.run.clock import Clock
from harness.run.internals import TE, wrap
from harness.run.schedules import Call
from harness.run.states import Recorder
from harness.scenario.model import CrashAt


class Point:
    """Where ``fire`` is called, once the run reaches ``point``; subclasses say what firing does."""

    recorder: Recorder | None
    clock: Clock | None
    calls: int
    lock: threading.Lock

    @property
    def point(self) -> CrashAt:
        raise NotImplementedError

    def fire(self, engine: Any = None) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def wired(self, clock: Clock, recorder: Recorder, responder: Any) -> Iterator[None]:
        """The point wired into Prefect's task engine, the responder and the clock, for one run."""
        self.recorder, self.clock = recorder, clock
        at = self.point
        with contextlib.ExitStack() as stack:
            if at.point in ("before_task", "after_return"):
                method = "begin_run" if at.point == "before_task" else "handle_success"
                for engine in ("SyncTaskRunEngine", "AsyncTaskRunEngine"):
                    wrap(stack, f"{TE}:{engine}.{method}", self._before)
            elif at.point in ("after_commit", "after_task"):
                for engine in ("SyncTaskRunEngine", "AsyncTaskRunEngine"):
                    wrap(stack, f"{TE}:{engine}.transaction_context", self._after_transaction)
            elif at.point == "after_call":
                responder.answered.append(self._after_call)
            else:  # at_time: a deadline on the run's root line, which every participant's waits reach
                stack.callback(clock.after(max((at.seconds or 0.0) - clock.root.offset, 0.0), self.fire))
            yield

    def _is_named(self, engine: Any) -> bool:
        """Whether ``engine``'s task run is the N-th run of the task the point names, in the flow's order."""
        at, task_run = self.point, getattr(engine, "task_run", None)
        if engine.task.name != at.task or task_run is None or self.recorder is None:
            return False
        runs = [r.id for r in self.recorder.in_order() if r.name == at.task]
        return task_run.id in runs and runs.index(task_run.id) + 1 == at.run

    def _before(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """``before_task`` (``begin_run``) and ``after_return`` (``handle_success``, unless the result is a cache
        hit: the function did not run)."""
        trigger = self

        def reached(engine: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
            if trigger.point.point == "after_return":
                transaction = kwargs.get("transaction", args[1] if len(args) > 1 else None)
                if transaction is not None and transaction.is_committed():
                    return False  # read from the cache: no function returned
            return trigger._is_named(engine)

        if _is_async(method):

            async def abefore(engine: Any, *args: Any, **kwargs: Any) -> Any:
                if reached(engine, args, kwargs):
                    trigger.fire()
                return await method(engine, *args, **kwargs)

            return abefore

        def before(engine: Any, *args: Any, **kwargs: Any) -> Any:
            if reached(engine, args, kwargs):
                trigger.fire()
            return method(engine, *args, **kwargs)

        return before

    def _after_transaction(self, context: Callable[..., Any]) -> Callable[..., Any]:
        trigger = self

        def completed(engine: Any) -> bool:
            state = getattr(engine, "state", None)  # Completed by this run: a cache hit commits nothing
            return state is not None and state.is_completed() and state.name != "Cached" and trigger._is_named(engine)

        if _is_async(getattr(context, "__wrapped__", context)):

            @contextlib.asynccontextmanager
            async def atransaction(engine: Any) -> Any:
                async with context(engine) as txn:
                    yield txn
                if completed(engine):
                    trigger.fire(engine)

            return atransaction

        @contextlib.contextmanager
        def transaction(engine: Any) -> Iterator[Any]:
            with context(engine) as txn:
                yield txn
            if completed(engine):
                trigger.fire(engine)

        return transaction

    def _after_call(self, call: Call) -> None:
        at = self.point
        if call.endpoint == at.request:
            with self.lock:
                self.calls += 1
                reached = self.calls == at.n
            if reached:
                self.fire()


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
