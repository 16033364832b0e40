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

_LINE: contextvars.ContextVar[Line | None] = contextvars.ContextVar("harness_clock_line", default=None)


@dataclass(eq=False, slots=True)
class Deadline:
    """An instant on a line; ``fire`` is called once, by the participant that reaches it when all have."""

    line: Line
    at: float
    owner: tuple[int, int | None]  # the thread and asyncio task that set it: its own wait is cut short by ``fire``
    fire: Callable[[], None]
    hold: Callable[[], None] = lambda: None  # a sync participant past it, once fired, waits here
    ahold: Callable[[], Any] | None = None  # the same in a coroutine (returns an awaitable)
    fired: bool = False


@dataclass(eq=False, slots=True)
class Line:
    """One participant's time: seconds skipped so far, and the line it was forked from.

    A counted line (a task run's, or a submitted future's) is one a deadline
    waits for; ``queued`` tells whether a future's task run is still waiting
    for a worker (None for a task run's own line).
    """

    clock: Clock
    offset: float = 0.0
    parent: Line | None = None
    counted: bool = False
    queued: Callable[[], bool] | None = None
    started: bool = False  # a submitted future's task run has started (on a line of its own)
    ended: bool = False
    waiting: int = 0  # blocked on something other than the clock (a future, a held retry)
    deadlines: list[Deadline] = field(default_factory=list)

    def chain(self) -> Iterator[Line]:
        line: Line | None = self
        while line is not None:
            yield line
            line = line.parent

    def caught_up(self, deadline: Deadline) -> bool:
        """Whether this line can do nothing more before ``deadline`` (it has reached it, or it waits)."""
        if self.ended or self.waiting or self.offset >= deadline.at:
            return True
        if self.queued is not None:
            return self.started or self.queued()
        return False


@dataclass(slots=True)
class Clock:
    """A per-scenario clock; ``sleep`` advances the caller's line instead of waiting."""

    real_time: bool = False
    started: float = field(default_factory=time.perf_counter)
    root: Line = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counted: list[Line] = field(default_factory=list)

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
        """A line for a participant starting now, concurrent with the caller."""
        parent = self.line()
        line = Line(self, parent.offset, parent, counted, queued)
        if counted:
            with self._lock:
                parent.started = True
                self._counted = [ln for ln in self._counted if not ln.ended]
                self._counted.append(line)
        return line

    def join(self, child: Line, into: Line | None = None) -> None:
        """The caller (or ``into``) has seen ``child`` finish: it is now at least as late as ``child``."""
        line = into or self.line()
        with self._lock:
            line.offset = max(line.offset, child.offset)

    def end(self, line: Line) -> None:
        """``line``'s participant is done: no deadline waits for it."""
        line.ended = True

    def entered(self, line: Line) -> contextvars.Token[Line | None]:
        """Make ``line`` the caller's (undo with ``left``)."""
        return _LINE.set(line)

    @staticmethod
    def left(token: contextvars.Token[Line | None]) -> None:
        _LINE.reset(token)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """The caller is blocked on something other than the clock: deadlines do not wait for it meanwhile."""
        line = self.line()
        with self._lock:
            line.waiting += 1
        try:
            yield
        finally:
            with self._lock:
                line.waiting -= 1

    def after(self, waited: float, fire: Callable[[], None], **holds: Any) -> Callable[[], None]:
        """Call ``fire`` once a participant of this line has waited ``waited`` more seconds.

        Returns the call that forgets the deadline, unless it has fired: a
        fired deadline still holds every participant that reaches it later.
        """
        line = self.line()
        deadline = Deadline(line, line.offset + waited, _owner(), fire, **holds)
        with self._lock:
            line.deadlines.append(deadline)

        def forget() -> None:
            with self._lock:
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

    def _try_fire(self, deadline: Deadline, force: bool = False) -> bool:
        """Fire ``deadline`` if every counted line under it has caught up (or ``force``); whether it has fired."""
        with self._lock:
            if deadline.fired:
                return True
            lines = [ln for ln in self._counted if deadline.line in ln.chain()]
            if not force and not all(ln.caught_up(deadline) for ln in lines):
                return False
            deadline.fired = True
        deadline.fire()
        return True

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
                until = time.monotonic() + CATCH_UP_S
                while not self._try_fire(reached) and time.monotonic() < until:
                    time.sleep(0.001)  # the others run up to it, in real time
                self._try_fire(reached, force=True)
                reached.hold()

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
                until = time.monotonic() + CATCH_UP_S
                for _ in range(3):  # coroutines created beside this one start, and fork their lines
                    await asyncio.sleep(0)
                while not self._try_fire(reached) and time.monotonic() < until:
                    await asyncio.sleep(0.001)
                self._try_fire(reached, force=True)
                await (reached.ahold() if reached.ahold is not None else anyio.sleep(0))
        await anyio.sleep(0)  # still a checkpoint, as a real sleep would be


def _owner() -> tuple[int, int | None]:
    """Who is waiting: this thread, and the asyncio task it runs, if any."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return threading.get_ident(), None if task is None else id(task)
