"""``cancel:``: the flow run is cancelled at a point, through Prefect's API, as a user cancels it.

``api_only`` sets the flow run ``Cancelling`` (forced, as the UI and
``prefect flow-run cancel`` do) and does nothing else: what happens next is
Prefect's doing. In Prefect 3 nothing in the engine of a flow running in its
own process watches the API for it (a runner or worker watches, and signals
the process), so the flow goes on; what it ends as is pinned by the tests and
written in the README ("Cancellation").

``runner``: the flow's process is one Prefect's runner started
(``harness.run.served``). The point sets the run ``Cancelling`` the same way,
then holds the run there until the runner, seeing it, signals the process:
Prefect's handler then ends the run where it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness._errors import HarnessError
from harness.run.clock import Clock
from harness.run.injector import harness_requests
from harness.run.points import Point
from harness.run.states import Recorder
from harness.scenario.model import Cancel, CrashAt

HOLD_S = 60.0  # at most this long (real time) for the runner to signal the process


@dataclass
class Canceller(Point):
    """Sets the scenario's flow run ``Cancelling`` through the API when the run reaches the point, once."""

    cancel: Cancel
    recorder: Recorder | None = None
    clock: Clock | None = None
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    fired: threading.Event = field(default_factory=threading.Event)
    at: float | None = None  # the virtual second it was cancelled at
    reached: Callable[[], None] | None = None  # ``runner``: told once the run is Cancelling, before it holds
    released: threading.Event = field(default_factory=threading.Event)  # ``runner``: the process is ending

    @property
    def point(self) -> CrashAt:
        return self.cancel.at

    def cancelled(self) -> str:
        """Where the run was cancelled ("after_return: step (api_only) at 0.05 s"), or "" when it never was."""
        return f"{self.cancel} at {self.at:.2f} s" if self.at is not None else ""

    def fire(self, engine: Any = None) -> None:
        from prefect.client.orchestration import get_client
        from prefect.context import FlowRunContext
        from prefect.states import Cancelling

        if self.cancel.how == "runner" and self.reached is None:  # no runner would ever end the hold
            raise HarnessError("cancel how: runner outside a process Prefect's runner started")
        context = FlowRunContext.get()
        run_id = self.recorder.flow_run_id if self.recorder is not None else None
        run_id = run_id or (context.flow_run.id if context is not None and context.flow_run is not None else None)
        with self.lock:
            if self.fired.is_set() or run_id is None:  # no flow run yet: nothing to cancel
                return
            self.fired.set()
            self.at = self.clock.now() if self.clock is not None else None

        # The harness's own request: not one of the flow's (``expect.prefect_api``), and never faulted.
        with harness_requests(), get_client(sync_client=True) as client:
            client.set_flow_run_state(
                run_id, Cancelling(message="Cancelled through the API (harness cancel:)"), force=True
            )
        if self.cancel.how == "runner":
            assert self.reached is not None
            self.reached()
            # Here until the runner's SIGTERM: Prefect's handler raises on the main thread, in this wait when the
            # point is on it; a submitted task run's thread waits until the process ends.
            self.released.wait(HOLD_S)
