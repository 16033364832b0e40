"""Pinning the races of submitted task runs: their retries, and the flow's exit.

When a flow returns, Prefect cancels the task runs it submitted and did not
wait on: ``ThreadPoolTaskRunner.__exit__`` calls ``cancel_all()``, and a task
checks its cancel event before each attempt and ends Crashed. How many
attempts ran first is a race between the task threads and the flow, made
sharper by virtual time (a retry delay costs nothing, so a task can spend
all its retries between the flow's ``submit`` and its ``return``): the same
scenario could give different states and calls from run to run.

The harness pins it, leaving the cancellation itself to Prefect. A task run
the flow submitted makes its first attempt at once; it waits before a retry
until something waits on a future of its flow run (``result()``, ``wait()``,
``as_completed``, a task taking it as input, Prefect resolving returned
futures, the flow polling ``future.state``): from then on every task run of that flow run retries freely, as
in Prefect. If the flow returns without waiting on anything, the task runs
still waiting to retry stay so, every other one finishes its attempt, and
Prefect's own ``__exit__`` cancels the waiting ones before their next
attempt (Crashed). The outcome names them: "still running when the flow
returned; cancelled by Prefect", and the report warns that the flow does
not wait on its futures.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

STOPPED = "still running when the flow returned; cancelled by Prefect"
RETRY_STATES = ("AwaitingRetry", "Retrying")


@dataclass(slots=True)
class _Runner:
    """What the gate knows of one task runner (one flow run)."""

    max_workers: int
    futures: dict[Any, Future[Any]] = field(default_factory=dict)  # task run id -> executor future
    returned: bool = False
    released: bool = False  # something waited on a future of this flow run: retries run freely
    cancelled: bool = False


class ExitGate:
    """Holds submitted task runs at a retry until their flow run waits on a future, or Prefect cancels them."""

    def __init__(self, is_final: Callable[[Any], bool]) -> None:
        self._is_final = is_final
        self._cond = threading.Condition()
        self._runners: dict[int, _Runner] = {}
        self._parked: set[Any] = set()
        self._held: set[Any] = set()  # task runs held at their flow run's fired deadline
        self._waits: dict[Any, Any] = {}  # task run id -> the task run id of the future it waits on
        self.stopped: list[Any] = []  # task runs held at a retry when Prefect cancelled them

    def changed(self) -> None:
        """Something the gate waits on may have changed (a state recorded, a future done)."""
        with self._cond:
            self._cond.notify_all()

    def _state(self, runner: Any) -> _Runner:
        return self._runners.setdefault(id(runner), _Runner(getattr(runner, "_max_workers", 1 << 30)))

    def submitted(self, runner: Any, task_run_id: Any, future: Future[Any]) -> None:
        with self._cond:
            self._state(runner).futures[task_run_id] = future
        future.add_done_callback(lambda _: self.changed())

    def returned(self, runner: Any) -> None:
        """The flow function of ``runner``'s flow run has returned or raised."""
        with self._cond:
            state = self._runners.get(id(runner))
            if state is not None:
                state.returned = True
            self._cond.notify_all()

    def at_retry(self, runner: Any, task_run_id: Any) -> None:
        """Called in a task's thread as it is about to retry: wait here until its flow run waits on a
        future (then retry), or until Prefect sets the task's cancel event at the flow's exit."""
        event = getattr(runner, "_cancel_events", {}).get(task_run_id)
        if event is None:
            return  # not submitted through this runner (a task called directly)
        with self._cond:
            state = self._state(runner)
            self._parked.add(task_run_id)
            self._cond.notify_all()
            while not (state.released or state.cancelled or (event is not None and event.is_set())):
                self._cond.wait(0.005)  # Prefect sets the event without telling the gate
            self._parked.discard(task_run_id)

    def held(self, runner: Any, task_run_id: Any, event: Any, bound: float) -> None:
        """A task run at its flow run's fired deadline waits for Prefect to cancel it (at most ``bound`` s).

        Counted as settled meanwhile, so that the flow run's exit can go on to
        set its cancel event; not one of the task runs the flow left unwaited.
        """
        until = time.monotonic() + bound
        with self._cond:
            state = self._state(runner)
            self._held.add(task_run_id)
            self._cond.notify_all()
            while not (state.cancelled or event.is_set()) and time.monotonic() < until:
                self._cond.wait(0.005)  # Prefect sets the event without telling the gate
            self._held.discard(task_run_id)

    @contextlib.contextmanager
    def parked(self, task_run_id: Any) -> Iterator[None]:
        """A task run waiting at its flow run's deadline: settled for the flow's exit meanwhile."""
        if task_run_id is None:
            yield
            return
        with self._cond:
            self._held.add(task_run_id)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._held.discard(task_run_id)

    def pool(self, runner: Any) -> tuple[int, list[Any]]:
        """``runner``'s number of workers, and the task runs submitted to it so far."""
        with self._cond:
            state = self._state(runner)
            return state.max_workers, list(state.futures)

    def queued(self, runner: Any, task_run_id: Any) -> bool:
        """Whether the task run of a submitted future waits for a worker of ``runner``'s full pool."""
        with self._cond:
            state = self._runners.get(id(runner))
            future = state.futures.get(task_run_id) if state is not None else None
            if state is None or future is None or future.running() or future.done():
                return False
            return sum(f.running() and not f.done() for f in state.futures.values()) >= state.max_workers

    def waiting(self, waiter: Any, awaited: Any) -> Callable[[], None]:
        """Something (task run ``waiter``, or the flow when None) waits on the future of ``awaited``.

        Returns the call that ends the wait.
        """
        with self._cond:
            for state in self._runners.values():
                if awaited in state.futures:
                    state.released = True
            if waiter is not None:
                self._waits[waiter] = awaited
            self._cond.notify_all()

        def done() -> None:
            with self._cond:
                if waiter is not None:
                    self._waits.pop(waiter, None)
                self._cond.notify_all()

        return done

    def settle(self, runner: Any, deadline: float = 3600.0) -> None:
        """Wait until no task run of ``runner`` can make progress before Prefect's cancellation."""
        with self._cond:
            state = self._runners.get(id(runner))
            if state is None:
                return
            state.returned = True
            self._cond.wait_for(lambda: all(self._settled(state, t) for t in state.futures), timeout=deadline)
            self.stopped += [t for t in state.futures if t in self._parked]

    def cancelled(self, runner: Any) -> None:
        """Prefect's ``__exit__`` is done: forget ``runner``, releasing anything still held."""
        with self._cond:
            state = self._runners.pop(id(runner), None)
            if state is not None:
                state.cancelled = True
            self._cond.notify_all()

    def _settled(self, state: _Runner, task_run_id: Any, depth: int = 0) -> bool:
        future = state.futures.get(task_run_id)
        if future is None or future.done() or task_run_id in self._parked | self._held or self._is_final(task_run_id):
            return True
        if not future.running():  # queued: it starts only when a worker is free
            busy = sum(f.running() and not f.done() for f in state.futures.values())
            return busy >= state.max_workers
        awaited = self._waits.get(task_run_id)
        if awaited is not None and depth < 100 and not self._is_final(awaited):
            return self._settled(state, awaited, depth + 1)
        return False
