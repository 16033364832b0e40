"""The virtual clock: retry delays and injected latency cost no wall-clock time.

Virtual time is wall time since the scenario started plus every sleep the
clock skipped, so it reads what a wall clock would have read had the flow
really slept. In real-time mode the clock sleeps for real and adds nothing.

Waits of concurrent task runs add up on it (one shared ``skipped``): it
does not overlap them as a wall clock would. So the deadlines set on real
time that the harness also keeps on the virtual clock (``after``: a flow's
``timeout_seconds``) count only the waits of their own owner, the thread and
asyncio task that set them (a flow run and the tasks it calls or awaits
directly), in seconds waited, the compute aside, so that they fall at the
same point on any machine: a skipped sleep of that owner that crosses one
stops there, fires it, and only then goes on, as a real sleep would have
been interrupted.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Clock:
    """A per-scenario clock; ``sleep`` advances it instead of waiting."""

    real_time: bool = False
    skipped: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _deadlines: dict[int, tuple[Any, float, Callable[[], None]]] = field(default_factory=dict)
    _own: dict[Any, float] = field(default_factory=dict)  # seconds each owner (thread, asyncio task) waited
    _keys: Iterator[int] = field(default_factory=itertools.count)

    def after(self, waited: float, fire: Callable[[], None]) -> Callable[[], None]:
        """Call ``fire`` once this owner has waited ``waited`` more seconds; returns the call that forgets it."""
        owner = _owner()
        with self._lock:
            key = next(self._keys)
            self._deadlines[key] = (owner, self._own.get(owner, 0.0) + waited, fire)
        return lambda: self._deadlines.pop(key, None) and None

    def now(self) -> float:
        """Virtual seconds since the scenario started."""
        return time.perf_counter() - self.started + self.skipped

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.real_time:
            time.sleep(seconds)
            return
        owner = _owner()
        remaining = seconds
        while True:
            with self._lock:
                own = self._own.get(owner, 0.0)
                due = sorted(
                    (when, key)
                    for key, (who, when, _) in self._deadlines.items()
                    if who == owner and when <= own + remaining
                )
                step = remaining if not due else min(max(due[0][0] - own, 0.0), remaining)
                self.skipped += step
                self._own[owner] = own + step
                remaining -= step
                if not due:
                    return
                _, _, fire = self._deadlines.pop(due[0][1])
            fire()  # may raise into this thread (a flow timeout on the main thread): the rest is not slept

    async def asleep(self, seconds: float) -> None:
        import anyio

        if self.real_time:
            await anyio.sleep(max(seconds, 0))
        else:
            self.sleep(seconds)
            await anyio.sleep(0)  # still a checkpoint, as a real sleep would be


def _owner() -> tuple[int, int | None]:
    """Who is waiting: this thread, and the asyncio task it runs, if any."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return threading.get_ident(), None if task is None else id(task)
