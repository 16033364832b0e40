"""The virtual clock: retry delays and injected latency cost no wall-clock time.

Virtual time is wall time since the scenario started plus every sleep the
clock skipped, so it reads what a wall clock would have read had the flow
really slept. In real-time mode the clock sleeps for real and adds nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Clock:
    """A per-scenario clock; ``sleep`` advances it instead of waiting."""

    real_time: bool = False
    skipped: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        """Virtual seconds since the scenario started."""
        return time.perf_counter() - self.started + self.skipped

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.real_time:
            time.sleep(seconds)
        else:
            with self._lock:
                self.skipped += seconds

    async def asleep(self, seconds: float) -> None:
        import anyio

        if self.real_time:
            await anyio.sleep(max(seconds, 0))
        else:
            self.sleep(seconds)
            await anyio.sleep(0)  # still a checkpoint, as a real sleep would be
