"""``cancel:``: the flow run is cancelled at a point, through Prefect's API, as a user cancels it.

``api_only`` sets the flow run ``Cancelling`` (forced, as the UI and
``prefect flow-run cancel`` do) and does nothing else: what happens next is
Prefect's doing. In Prefect 3 nothing in the engine of a flow running in its
own process watches the API for it (a runner or worker watches, and signals
the process), so the flow goes on; what it ends as is pinned by the tests and
written in the README ("Cancellation").
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.run.clock import Clock
from harness.run.injector import harness_requests
from harness.run.points import Point
from harness.run.states import Recorder
from harness.scenario.model import Cancel, CrashAt


@dataclass
class Canceller(Point):
    """Sets the scenario's flow run ``Cancelling`` through the API when the run reaches the point, once."""

    cancel: Cancel
    recorder: Recorder | None = None
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    fired: threading.Event = field(default_factory=threading.Event)
    at: float | None = None  # the virtual second it was cancelled at

    @property
    def point(self) -> CrashAt:
        return self.cancel.at

    @contextlib.contextmanager
    def armed(self, clock: Clock, recorder: Recorder, responder: Any) -> Iterator[None]:
        self._clock = clock
        with self.wired(clock, recorder, responder):
            yield

    def fire(self, engine: Any = None) -> None:
        with self.lock:
            if self.fired.is_set() or self.recorder is None or self.recorder.flow_run_id is None:
                return
            self.fired.set()
            self.at = self._clock.now()
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelling

        # The harness's own request: not one of the flow's (``expect.prefect_api``), and never faulted.
        with harness_requests(), get_client(sync_client=True) as client:
            client.set_flow_run_state(
                self.recorder.flow_run_id, Cancelling(message="Cancelled through the API (harness cancel:)"), force=True
            )
