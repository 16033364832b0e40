"""The flow's process that Prefect's runner started, for ``cancel: {how: runner}`` (``harness.run.served``).

Named, never imported, by ``served``: the pickled flow carries its job, and
unpickling it calls ``install``, which sets up the run here (the endpoints,
the clock, the recorder, the cancel point: ``Session.watching``) before
Prefect's engine starts it. What the process knows of the run is sent to the
harness's process as it changes (``Reporter``), the last as the process
ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import tempfile
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.run._crashing import _Given
from harness.run.crash import Snapshot, snapshot_of
from harness.run.pipes import send
from harness.run.session import Session

if TYPE_CHECKING:
    from harness.run.clock import Clock
    from harness.run.states import Recorder

_KEPT: list[Any] = []  # what stays set up in this process until it ends


def install(job: dict[str, Any]) -> Any:
    """The run set up in this process before Prefect's engine starts it, and the flow it is to run (resolved here,
    a strategy's options on it); its last report as the process ends."""
    import multiprocessing.util

    # Its temporary files (the session's wire and results folders) in the history's folder, removed with it.
    own = job["history"].folder / "tmp" / str(os.getpid())
    own.mkdir(parents=True)
    tempfile.tempdir = os.environ["TMPDIR"] = str(own)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(job["socket"])
    reporter = Reporter(sock)
    stack = contextlib.ExitStack()
    try:
        session = Session(False, None, job["transport"], server=_Given(job["setup"]))
        watch = stack.enter_context(
            session.watching(
                job["scenario"],
                real_time=job["real_time"],
                policy=job["policy"],
                history=job["history"],
                crash=reporter,
                also=_control_port(),
            )
        )
    except BaseException:
        reporter.failed(traceback.format_exc())
        raise
    _KEPT.extend([sock, reporter, stack, session])
    # As the process ends: a held thread goes first (multiprocessing's exit, before the interpreter joins its
    # threads), and the last report once every thread has ended (atexit runs after that join).
    multiprocessing.util.Finalize(None, reporter.release, exitpriority=100)
    atexit.register(reporter.last)
    return watch.flow


def _control_port() -> tuple[int, ...]:
    """The runner's control channel, which Prefect's engine connects to as it starts the run (read from the
    environment, before Prefect does)."""
    import prefect._internal.control_listener as listener

    listener.configure_from_env()
    port = listener._configured_port
    return (port,) if port is not None else ()


@dataclass
class Reporter:
    """Snapshots of the run sent to the harness's process, at each state and hook recorded, at the point, and as
    the process ends (``Session._watching`` arms it as it arms a crash trigger)."""

    sock: socket.socket
    canceller: Any = None  # ``Session`` sets them, as on a crash trigger
    slots: Any = None
    guard: Any = None
    snapshot: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def armed(self, clock: Clock, recorder: Recorder, responder: Any) -> Iterator[None]:
        self.snapshot = lambda: snapshot_of(
            clock, recorder, responder, self.canceller, None, self._reached(), self.guard
        )
        recorder.listeners.append(self.send)
        if self.canceller is not None:  # wired by ``Session``: it tells this once the run is Cancelling
            self.canceller.reached = self.send
        yield

    def _reached(self) -> bool:
        return self.canceller is not None and self.canceller.fired.is_set()

    def send(self) -> None:
        if self.snapshot is None:
            return
        with self.lock, contextlib.suppress(OSError):
            send(self.sock.fileno(), self.snapshot())

    def failed(self, error: str) -> None:
        with self.lock, contextlib.suppress(OSError):
            send(self.sock.fileno(), Snapshot(False, None, (), (), (), 0.0, 0.0, [], error=error))

    def release(self) -> None:
        if self.canceller is not None:
            self.canceller.released.set()  # a held thread goes on
        self.send()

    def last(self) -> None:
        self.release()
        with contextlib.suppress(OSError):
            self.sock.close()
