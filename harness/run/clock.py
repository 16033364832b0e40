"""The virtual clock: retry delays and injected latency cost no wall-clock time.

Virtual time is wall time since the scenario started plus every sleep the
clock skipped, so it reads what a wall clock would have read had the flow
really slept. In real-time mode the clock sleeps for real and adds nothing.

Deadlines set on real time (a flow's ``timeout_seconds``) are kept on the
virtual clock too (``after``), counted in seconds waited, the compute aside,
as the time waited at a task timeout is, so that they fall at the same point
on any machine: a skipped sleep that crosses one stops there, fires it, and
only then goes on, as a real sleep would have been interrupted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Clock:
    """A per-scenario clock; ``sleep`` advances it instead of waiting."""

    real_time: bool = False
    skipped: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _deadlines: dict[int, tuple[float, Callable[[], None]]] = field(default_factory=dict)

    def after(self, waited: float, fire: Callable[[], None]) -> Callable[[], None]:
        """Call ``fire`` once ``waited`` more seconds are skipped; returns the call that forgets it."""
        key = id(fire)
        with self._lock:
            self._deadlines[key] = (self.skipped + waited, fire)
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
        remaining = seconds
        while True:
            with self._lock:
                end = self.skipped + remaining
                due = sorted((when, key) for key, (when, _) in self._deadlines.items() if when <= end)
                if not due:
                    self.skipped = end
                    return
                when, key = due[0]
                _, fire = self._deadlines.pop(key)
                step = min(max(when - self.skipped, 0.0), remaining)
                self.skipped += step
                remaining -= step
            fire()  # may raise into this thread (a flow timeout on the main thread): the rest is not slept

    async def asleep(self, seconds: float) -> None:
        import anyio

        if self.real_time:
            await anyio.sleep(max(seconds, 0))
        else:
            self.sleep(seconds)
            await anyio.sleep(0)  # still a checkpoint, as a real sleep would be
