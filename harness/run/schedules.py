"""Where each target's schedule of steps is, and the log of the calls the flow made.

A schedule serves an endpoint's steps (or a Prefect API route's, the events
stream's, a function target's) in order, ``times`` each, ``until`` windows
by the virtual clock, then chaos drawn from the scenario's seed, else the
last step again. ``Call`` is one call logged with what served it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from harness.run.clock import Clock, Line
from harness.scenario.model import Step

E = TypeVar("E", bound=Any)  # an Endpoint, an ApiEndpoint, the events stream's target or a FunctionTarget


@dataclass(frozen=True, slots=True)
class Call:
    """One request the flow sent, and what the harness did with it."""

    at: float  # virtual seconds since the scenario started
    method: str
    url: str
    endpoint: str | None  # the endpoint's request line; None when unmatched
    served: str  # "200", "read_timeout", "malformed html (200)", ...
    status: int | None  # the status answered, None for a transport fault
    headers: tuple[tuple[str, str], ...]
    task_run: Any = None
    task: str | None = None
    transport: str = "respx"  # what served it: "respx" (httpx, in-process) or "wire" (a real socket)


class Schedule(Generic[E]):
    """The steps of one endpoint: scripted in order, then chaos, else the last repeats.

    A step with ``until`` is a window: it serves every call until the virtual
    clock reaches that second, then gives way to the next step.
    """

    def __init__(self, endpoint: E, rng: random.Random, clock: Clock) -> None:
        self.endpoint: E = endpoint
        self.rng, self.clock = rng, clock
        # an endpoint's steps, or the events stream's (``EventStep``, read as they are)
        self._steps: list[Any] = [s for s in endpoint.responses for _ in range(s.times)]
        self._served = 0
        self._held: Step | None = None  # peeked at a connection's opening, served to the next call
        request = getattr(endpoint, "request", None)  # a function target has no host
        self.host = (urlsplit(request.url).hostname or "") if request is not None else ""

    def peek(self) -> Step:
        """The step the next call gets, drawn once: a later ``next`` returns the same step."""
        if self._held is None:
            self._held = self._draw(self.clock.now())
        return self._held

    def position(self) -> tuple[int, Step | None, Any]:
        """Where the schedule is: steps served, the step held for the next call, chaos' generator."""
        return self._served, self._held, self.rng.getstate()

    def go_on(self, position: tuple[int, Step | None, Any]) -> None:
        """Go on from ``position`` (another run's, in the same history)."""
        self._served, self._held, state = position
        self.rng.setstate(state)

    def next(self, line: Line | None = None) -> Step:
        """The step of a call made at the virtual time of ``line`` (the caller's by default)."""
        if self._held is not None:
            step, self._held = self._held, None
            return step
        drawn: Step = self._draw(self.clock.now(line))
        return drawn

    def _draw(self, now: float) -> Any:  # a Step (an EventStep on the events stream)
        chaos = self.endpoint.chaos
        while (
            self._served < len(self._steps) - 1
            and self._steps[self._served].until is not None
            and now >= (self._steps[self._served].until or 0)
        ):
            self._served += 1  # the window has closed
        if self._served < len(self._steps) and self._steps[self._served].until is not None:
            if now < (self._steps[self._served].until or 0) or self._served == len(self._steps) - 1:
                return self._steps[self._served]
            self._served += 1
        if self._served < len(self._steps):
            step = self._steps[self._served]
        elif chaos is not None:
            faulted = self.rng.random() < chaos.rate
            step = self.rng.choice(chaos.faults) if faulted else chaos.otherwise
        else:
            step = self._steps[-1]
        self._served += 1
        return step
