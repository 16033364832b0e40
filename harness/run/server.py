"""The session's own Prefect test server: started early, on a copied template database, stopped with it.

A fresh Prefect database needs its migrations run, which costs seconds; the
first session migrates a template once (keyed by Prefect's version) and every
later session copies it. The server is started as soon as the session knows it
will run a scenario and is waited for only when the first flow needs it.
``kept`` and ``forked`` are the other two ways a session gets a server;
``process`` holds what they share.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness._errors import ServerError
from harness.run.process import (
    SETTINGS,
    free_port,
    healthy,
    launch,
    log_tail,
    save_template,
    scratch_folder,
    server_environment,
)


class PrefectServer:
    """A Prefect API server in a subprocess, on loopback, with its own database."""

    def __init__(self) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.folder = scratch_folder(f"harness-server-{os.getpid()}-")
        self.log = self.folder / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # its process, once started
        self.started_at = 0.0
        self.ready_at = 0.0

    @property
    def home(self) -> Path:
        """A private PREFECT_HOME for the session: nothing touches the user's."""
        return self.folder / "home"

    def environment(self) -> dict[str, str]:
        """Settings for the client process, to apply before Prefect is imported."""
        return {**SETTINGS, "PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home)}

    def start(self) -> None:
        """Start the server process; returns at once (see ``wait``)."""
        atexit.register(self.stop)
        self.started_at = time.perf_counter()
        self._process = launch([str(self.port), str(os.getpid())], self.process_environment(), self.log)
        self.pid = self._process.pid

    def process_environment(self) -> dict[str, str]:
        """The server process's environment; its database is made here (a copy of the template, when there is one)."""
        return server_environment(self.home, self.folder / "prefect.db")

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the server answers ``/health``."""
        if self.ready_at:
            return
        if self._process is None:
            self.start()
        process = self._process
        assert process is not None
        if not healthy(self.api_url, timeout, gone=lambda: process.poll() is not None):
            if process.poll() is not None:
                raise ServerError(f"the Prefect test server exited with code {process.returncode}:\n{self.log_tail()}")
            self.stop()
            raise ServerError(f"the Prefect test server did not answer within {timeout:.0f} s:\n{self.log_tail()}")
        self.ready_at = time.perf_counter()
        save_template(self.folder / "prefect.db")

    def log_tail(self) -> str:
        return log_tail(self.log)

    def stop(self) -> None:
        """Stop the server and remove its database; safe to call twice."""
        process, self._process, self.pid = self._process, None, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
