"""One harness worker process, seen from the process that feeds it: start it, send jobs, read replies.

Messages are pickles framed by their length on two pipes of the worker's own
(never its stdout, which the flows print to). A worker that dies shows as
``EOFError`` on its next reply.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from harness.run.forked import Forkserver, HandedServer, hand_over
from harness.run.kept import reuse_requested
from harness.run.pipes import receive, send
from harness.run.server import PrefectServer


def session_options(verbose: bool = False, **session: Any) -> dict[str, Any]:
    """What a worker needs to run as this process would: its ``Session``'s arguments, imports and folder."""
    return {
        "session": session,
        "start_server": not reuse_requested(),  # a kept server is claimed by the worker's session instead
        "verbose": verbose,
        "sys_path": list(sys.path),
        "cwd": os.getcwd(),
    }


class WorkerProcess:
    """A ``python -m harness.parallel._worker`` child with its own session and Prefect server.

    The server is started here, at once, and handed over: it boots while the
    worker starts and imports the harness, as a serial session's server boots
    while the scenarios load. With a ``forkserver`` it is forked from there.
    """

    def __init__(self, options: dict[str, Any], forkserver: Forkserver | None = None) -> None:
        self.server: PrefectServer | None = None
        if options.get("start_server"):
            if forkserver is not None:
                handed = forkserver.start()
                self.server = HandedServer(handed)
            else:
                self.server = PrefectServer()
                self.server.start()
                handed = hand_over(self.server)
            options = {**options, "server": handed}
        # Its own temporary folder: whatever a worker that dies leaves there (its wire CA's keys, a
        # scenario's working directory) goes with it when the parent closes it. Not with a kept server,
        # which the worker claims and which must outlive it.
        self._tmp = tempfile.mkdtemp(prefix="harness-worker-")
        env = {**os.environ, "TMPDIR": self._tmp} if options.get("start_server") else None
        to_child, self._to = os.pipe()
        self._from, from_child = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "harness.parallel._worker", str(to_child), str(from_child)],
                env=env,
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
                stdout=None if options.get("verbose") else subprocess.DEVNULL,
                # its own process group: Ctrl-C reaches the parent, which stops its workers in order
                start_new_session=True,
            )
        except BaseException:
            if self.server is not None:
                self.server.stop()  # handed to no one
            os.close(self._to)
            os.close(self._from)
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        finally:
            os.close(to_child)
            os.close(from_child)
        self.where = f"worker process {self.process.pid}"
        self.job: Any = None  # what it is running, for the feeder's bookkeeping
        self.ready = False  # it started its session and said so
        send(self._to, options)

    def fileno(self) -> int:
        return self._from

    def submit(self, job_id: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Send one job; the reply comes through ``reply``."""
        payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.job = job_id
        send(self._to, ("job", job_id, payload))

    def reply(self) -> tuple[Any, bool, Any]:
        """(job id, ok, value or ``Failed``) of the job it ran; ``EOFError`` when it died."""
        while (message := self.next_message()) is None:
            pass
        return message

    def next_message(self) -> tuple[Any, bool, Any] | None:
        """One message: the job's reply, or None when it was the worker saying it is ready (no reply yet)."""
        message = receive(self._from)
        if message[0] == "ready":
            self.where, self.ready = message[1], True
            return None
        _, job_id, ok, value = message
        self.job = None
        return job_id, ok, value

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        """Run one job and wait for it: (ok, value or ``Failed``); ``EOFError`` when the worker died."""
        self.submit(0, fn, args)
        _, ok, value = self.reply()
        return ok, value

    def stop(self) -> None:
        """Ask it to stop: at once when it is running a job, else after closing its session."""
        if self.job is not None:
            self.terminate()
            return
        with contextlib.suppress(OSError):
            send(self._to, ("stop",))
        self._close_pipes()

    def close(self, timeout: float = 30.0) -> None:
        """Stop it and wait until it has closed its session; safe to call twice."""
        self.stop()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.terminate()
        self._stop_server()

    def terminate(self) -> None:
        """Stop it now: SIGTERM, on which it closes its session and its server; SIGKILL if it does not."""
        self._close_pipes()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stop_server()

    def _stop_server(self) -> None:
        """The worker stops its server with its session; this stops it too when the worker could not.

        Its temporary folder goes too: the worker has ended by now.
        """
        shutil.rmtree(self._tmp, ignore_errors=True)
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def _close_pipes(self) -> None:
        for fd in (self._to, self._from):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._to = self._from = -1
