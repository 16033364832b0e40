"""The virtual clock: retry delays and injected latency cost no wall-clock time.

Virtual time is wall time since the scenario started plus the sleeps the
clock skipped, so it reads what a wall clock would have read had the flow
really slept. In real-time mode the clock sleeps for real and adds nothing.

Concurrent waits overlap as on a wall clock. Each participant of a run (a
flow run, a task run, a submitted future) has a ``Line`` of its own, held in
a context variable: what it skipped so far. A task run or subflow run starts
on a line forked from its caller's at the moment it is called or submitted
(``fork``); when its caller gets its result (a direct call returning,
``future.result()``, ``wait()``, a done callback) the caller's line moves to
the later of its own and the child's (``join``). Two task runs that each
wait one second side by side cost their flow one second, not two.

A deadline set on a line (``after``: a flow's ``timeout_seconds``) is an
instant on that line, counted in seconds waited, the compute aside, so that
it falls at the same point on any machine. Every participant on a line
forked from it checks it. The deadline's own participant (the flow run's
thread and asyncio task) fires it as its skipped sleep crosses it, and what
the firing raises cuts that sleep short. Another participant (a task run
the flow called or submitted) that reaches it first waits until every task
run under the deadline has caught up with it (reached it too, ended, or
waits on something: a future, a retry held by the exit gate, a free
worker), as in real time they would all have run up to it; then it fires,
once. Every participant that reaches a fired deadline is held there
(``Deadline.hold``), as its real sleep would still be running when the
deadline's consequences (Prefect's cancellation) arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

CATCH_UP_S = 5.0  # at most this long (real time) a participant waits at a deadline for the others to reach it
OWNER_IDLE_S = 0.1  # a flow's coroutine suspended this long (real time) waits on what it awaits

_LINE: contextvars.ContextVar[Line | None] = contextvars.ContextVar("harness_clock_line", default=None)


@dataclass(eq=False, slots=True)
class Deadline:
    """An instant on a line; ``fire`` is called once, when every participant under it has caught up with it."""

    line: Line = field(repr=False)
    at: float
    owner: tuple[int, int | None]  # the thread and asyncio task that set it: its own wait is cut short by ``fire``
    fire: Callable[[], None]
    hold: Callable[[], None] = lambda: None  # a sync participant past it, once fired, waits here
    ahold: Callable[[], Any] | None = None  # the same in a coroutine (returns an awaitable)
    parked: Callable[[], Any] = contextlib.nullcontext  # a participant waiting at it: not one the flow's exit waits for
    owner_task: Any = None  # the owner's asyncio task, if any: suspended, it waits on what it awaits
    fired: bool = False
    over: bool = False  # its scope has exited: it will never fire


@dataclass(eq=False, slots=True)
class Line:
    """One participant's time: seconds skipped so far, and the line it was forked from.

    A counted line (a task run's, or a submitted future's) is one a deadline
    waits for; ``queued`` tells whether a future's task run is still waiting
    for a worker (None for a task run's own line), ``child`` is the line its
    task run runs on once started.
    """

    clock: Clock = field(repr=False)
    offset: float = 0.0
    parent: Line | None = field(default=None, repr=False)
    counted: bool = False
    queued: Callable[[], bool] | None = field(default=None, repr=False)
    child: Line | None = field(default=None, repr=False)  # a submitted future's task run, once started
    free_worker: bool = False  # a submitted future's: a worker of its pool was free when it was submitted
    returned: bool = False  # a flow run's: its function has returned (it starts no task run any more)
    ended: bool = False
    waiting: int = 0  # blocked on something that moves only when the flow does (a retry held by the exit gate)
    waiting_on: list[Line] = field(default_factory=list, repr=False)  # blocked until one of these ends
    called_back: list[Line] = field(default_factory=list, repr=False)  # done callbacks it registered, not yet called
    task: Any = field(default=None, repr=False)  # the asyncio task it runs in, if any
    deadlines: list[Deadline] = field(default_factory=list, repr=False)

    def chain(self) -> Iterator[Line]:
        line: Line | None = self
        while line is not None:
            yield line
            line = line.parent

    def caught_up(self, deadline: Deadline, depth: int = 0) -> bool:
        """Whether this line can do nothing more before ``deadline``: it has reached it, or it waits on lines
        that all have (one that ended before it would wake it before the deadline)."""
        if self.offset >= deadline.at or self.waiting:
            return True
        if self.ended:
            return True
        if self.waiting_on:
            return depth < 50 and all(
                not (w.ended and w.offset < deadline.at) and w.caught_up(deadline, depth + 1) for w in self.waiting_on
            )
        if self.queued is not None:  # a submitted future: its task run's line, or a full pool
            if self.child is not None:
                return depth < 50 and self.child.caught_up(deadline, depth + 1)
            return self.queued()
        return False


@dataclass(slots=True)
class Clock:
    """A per-scenario clock; ``sleep`` advances the caller's line instead of waiting."""

    real_time: bool = False
    started: float = field(default_factory=time.perf_counter)
    root: Line = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counted: list[Line] = field(default_factory=list)
    _free: dict[int, float] = field(default_factory=dict)  # worker thread -> when its last task run ended

    def __post_init__(self) -> None:
        self.root = Line(self)

    def line(self) -> Line:
        """The caller's line: the one in its context, or the run's root line."""
        line = _LINE.get()
        return line if line is not None and line.clock is self else self.root

    @property
    def skipped(self) -> float:
        """Seconds the caller's line skipped (at the run's end, on the root line: the critical path's waits)."""
        return self.line().offset

    def now(self, line: Line | None = None) -> float:
        """Virtual seconds since the scenario started, on ``line`` (the caller's by default)."""
        return time.perf_counter() - self.started + (line or self.line()).offset

    def fork(self, counted: bool = False, queued: Callable[[], bool] | None = None) -> Line:
        """A line for a participant starting now, concurrent with the caller.

        A task run started by a worker of a pool (on a future's line) starts no earlier than that worker
        was last free: with more items than workers, the later ones wait their turn.
        """
        parent = self.line()
        line = Line(self, parent.offset, parent, counted, queued)
        if counted:
            with self._lock:
                if parent.queued is not None:  # a submitted future's task run, starting in a worker thread
                    parent.child = line
                    if not parent.free_worker:  # it waited for a worker: it starts once this one was free
                        line.offset = max(line.offset, self._free.get(threading.get_ident(), 0.0))
                self._counted = [ln for ln in self._counted if not ln.ended]
                self._counted.append(line)
        return line

    def join(self, child: Line, into: Line | None = None) -> None:
        """The caller (or ``into``) has seen ``child`` finish: it is now at least as late as ``child``."""
        line = into or self.line()
        with self._lock:
            line.offset = max(line.offset, child.offset)

    def end(self, line: Line) -> None:
        """``line``'s participant is done: no deadline waits for it; a future whose task run it was is done too."""
        with self._lock:
            line.ended = True
            parent = line.parent
            if parent is not None and parent.child is line:
                parent.offset = max(parent.offset, line.offset)
                parent.ended = True
                self._free[threading.get_ident()] = line.offset  # this worker is free from then on

    def entered(self, line: Line) -> contextvars.Token[Line | None]:
        """Make ``line`` the caller's (undo with ``left``)."""
        return _LINE.set(line)

    @staticmethod
    def left(token: contextvars.Token[Line | None]) -> None:
        _LINE.reset(token)

    @contextlib.contextmanager
    def waiting(self, on: tuple[Line, ...] = ()) -> Iterator[None]:
        """The caller is blocked until one of ``on`` ends (or, with none, until the flow moves it on)."""
        line = self.line()
        self.wait_for(line, *on)
        try:
            yield
        finally:
            self.stop_waiting(line, *on)

    def wait_for(self, line: Line, *on: Line) -> None:
        """``line`` is blocked until one of ``on`` ends (with none: until the flow moves it on)."""
        with self._lock:
            if on:
                line.waiting_on.extend(on)
            else:
                line.waiting += 1

    def stop_waiting(self, line: Line, *on: Line) -> None:
        with self._lock:
            if not on:
                line.waiting -= 1
            for other in on:
                if other in line.waiting_on:
                    line.waiting_on.remove(other)

    def after(self, waited: float, fire: Callable[[], None], **holds: Any) -> Callable[[], None]:
        """Call ``fire`` once participants of this line have waited ``waited`` more seconds.

        Returns the call to make when the deadline's scope exits: it never
        fires after that; once fired, it still holds every participant that
        reaches it later.
        """
        line = self.line()
        try:
            owner_task = asyncio.current_task()
        except RuntimeError:
            owner_task = None
        deadline = Deadline(line, line.offset + waited, _owner(), fire, owner_task=owner_task, **holds)
        with self._lock:
            line.deadlines.append(deadline)

        def forget() -> None:
            with self._lock:
                deadline.over = True
                if not deadline.fired and deadline in line.deadlines:
                    line.deadlines.remove(deadline)

        return forget

    def _advance(self, line: Line, remaining: float) -> tuple[float, Deadline | None, bool]:
        """Skip up to the first deadline within ``remaining`` seconds.

        Returns what is left, the deadline reached (if any), and whether it is
        the caller's own: its owner fires it at once, and what that raises
        (at once in a thread; at the next checkpoint in a coroutine) cuts the
        rest short. Anyone else stops at it, to fire it once all have caught up.
        """
        owner = _owner()
        with self._lock:
            end = line.offset + remaining
            due = [
                d
                for ln in line.chain()
                for d in ln.deadlines
                if d.at <= end and (not d.fired or d.at > line.offset)  # one fired and passed is behind it
            ]
            if not due:
                line.offset += remaining
                return 0.0, None, False
            first = min(due, key=lambda d: d.at)
            step = min(max(first.at - line.offset, 0.0), remaining)
            line.offset += step
            remaining -= step
            if first.owner != owner:
                return remaining, first, False
            fire, first.fired = not first.fired, True
            if first in first.line.deadlines:
                first.line.deadlines.remove(first)
        if fire:
            first.fire()
        return remaining, first, True

    def _try_fire(self, deadline: Deadline, owner_idle: bool = False) -> bool:
        """Fire ``deadline`` once its line and every counted line under it have caught up with it.

        ``owner_idle``: the flow's coroutine has been suspended a while (awaiting what it gathered).
        Whether the caller may go on: it has fired, or its scope exited first.
        """
        with self._lock:
            if deadline.fired or deadline.over:
                return True
            owner = deadline.line
            if not (owner.caught_up(deadline) or owner_idle):
                return False
            lines = [ln for ln in self._counted if deadline.line in ln.chain()]
            if not all(ln.caught_up(deadline) for ln in lines):
                return False
            deadline.fired = True
            owner.offset = max(owner.offset, deadline.at)  # the flow run is cut off at its deadline
        deadline.fire()
        return True

    def _catch_up(self, deadline: Deadline) -> None:
        """Wait (real time, bounded) for the others to reach ``deadline``, then fire it; past the bound, go on."""
        until, idle = time.monotonic() + CATCH_UP_S, _Idle(deadline.owner_task)
        with deadline.parked():
            while not self._try_fire(deadline, idle()) and time.monotonic() < until:
                time.sleep(0.001)  # the others run up to it, in real time
        if deadline.fired:
            deadline.hold()

    async def _acatch_up(self, deadline: Deadline) -> None:
        import anyio

        until, idle = time.monotonic() + CATCH_UP_S, _Idle(deadline.owner_task)
        with deadline.parked():
            for _ in range(3):  # coroutines created beside this one start, and fork their lines
                await asyncio.sleep(0)
            while not self._try_fire(deadline, idle()) and time.monotonic() < until:
                await asyncio.sleep(0.001)
        if deadline.fired:
            await (deadline.ahold() if deadline.ahold is not None else anyio.sleep(0))

    def sleep(self, seconds: float, line: Line | None = None) -> None:
        """Skip ``seconds`` on the caller's line (or ``line``: a wire server's thread waiting for a client)."""
        if seconds <= 0:
            return
        if self.real_time:
            time.sleep(seconds)
            return
        line, remaining = line or self.line(), seconds
        while remaining > 0:
            remaining, reached, owned = self._advance(line, remaining)
            if reached is not None and not owned:
                self._catch_up(reached)

    async def asleep(self, seconds: float) -> None:
        import anyio

        if self.real_time:
            await anyio.sleep(max(seconds, 0))
            return
        line, remaining = self.line(), seconds
        while remaining > 0:
            remaining, reached, owned = self._advance(line, remaining)
            if owned:
                await anyio.sleep(0)  # where the flow run's cancellation lands, cutting the rest short
            elif reached is not None:
                await self._acatch_up(reached)
        await anyio.sleep(0)  # still a checkpoint, as a real sleep would be


class _Idle:
    """Whether an asyncio task has stayed suspended on a future for ``OWNER_IDLE_S`` (awaiting what it
    gathered, say), as seen by repeated calls; a short real ``await`` in between does not count."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.since: float | None = None

    def __call__(self) -> bool:
        task = self.task
        if task is None or task.done() or getattr(task, "_fut_waiter", None) is None:
            self.since = None
            return False
        since = self.since = self.since or time.monotonic()
        return time.monotonic() - since >= OWNER_IDLE_S


def _owner() -> tuple[int, int | None]:
    """Who is waiting: this thread, and the asyncio task it runs, if any."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return threading.get_ident(), None if task is None else id(task)
