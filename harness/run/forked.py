"""Prefect servers for worker processes: forked from one process that imported Prefect's server once.

A worker pool (``harness.parallel``) starts its workers' servers at once,
before each worker has even imported the harness, and hands each over
(``hand_over`` / ``take_over``); the worker's session then uses it
(``HandedServer``) and stops it when it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from harness._errors import ServerError
from harness.run.process import (
    healthy,
    is_serve,
    launch,
    log_tail,
    save_template,
    scratch_folder,
    server_environment,
)
from harness.run.server import PrefectServer


class Forkserver:
    """Prefect servers forked from one process that has imported Prefect's server once.

    Importing ``prefect.server.api.server`` is most of a server's start (about
    2 s of CPU here); a pool of N workers pays it once instead of N times. The
    forkserver starts at once and imports while the workers start; ``start``
    returns without waiting for it: the server's pid is in its folder
    (``server.pid``) once it is forked, which is what ``HandedServer`` reads.
    A forked server belongs to this process, not to the forkserver: it
    outlives a forkserver that dies (a new one is started for the next
    server), and ends by itself when this process is gone. ``also``: a folder
    of this process's that the forkserver removes if this process is killed.
    """

    PID_FILE = "server.pid"

    def __init__(self, also: Path | None = None) -> None:
        self._also = also
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._spawn()
        atexit.register(self.close)

    def _spawn(self) -> None:
        """Start the forkserver (again, when it died: the dead one's folder goes, its servers reported already)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        folder = self._dir = scratch_folder(f"harness-forkserver-{os.getpid()}-")
        self.log = folder / "forkserver.log"
        args = ["--forkserver", str(os.getpid()), str(folder)] + ([str(self._also)] if self._also is not None else [])
        self._process = launch(args, server_environment(folder / "home"), self.log, stdin=subprocess.PIPE)

    @property
    def pid(self) -> int:
        assert self._process is not None, "closed"
        return self._process.pid

    def start(self) -> dict[str, Any]:
        """A new server, on its own port, folder and database, forked as soon as the forkserver has imported.

        Returns what ``HandedServer`` takes: port, folder, the forkserver's pid and log.
        """
        assert not self._closed and self._process is not None, "closed"
        if self._process.poll() is not None:
            self._spawn()
        assert self._process.stdin is not None
        server = PrefectServer()
        try:
            spec = {
                "port": server.port,
                "env": server.process_environment(),
                "log": str(server.log),
                "pid_file": str(server.folder / self.PID_FILE),
                "owner": os.getpid(),
            }
            self._process.stdin.write(json.dumps(spec).encode() + b"\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # it died meanwhile: the server's wait says so, with the forkserver's log
        except BaseException:
            shutil.rmtree(server.folder, ignore_errors=True)  # handed to no one
            raise
        return {
            "port": server.port,
            "pid": None,
            "folder": str(server.folder),
            "forkserver": self.pid,
            "forkserver_log": str(self.log),
        }

    def close(self) -> None:
        """Stop forking; the servers already forked end with their sessions (or by themselves). Safe to call twice."""
        self._closed = True
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.write(b"\n")  # an empty line: closed by the harness, which is still here
            process.stdin.flush()
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


_HANDED: list[dict[str, Any]] = []  # a server started for this process by the one that feeds it (a worker's)


def handed() -> HandedServer | None:
    """The server ``take_over`` was given for this process's next session, if any."""
    return HandedServer(_HANDED.pop()) if _HANDED else None


def hand_over(server: PrefectServer) -> dict[str, Any]:
    """What another process needs to use ``server``, started here (a worker pool starts its workers' servers
    at once, before each worker has even imported the harness)."""
    assert server.pid is not None, "start the server first"
    return {"port": server.port, "pid": server.pid, "folder": str(server.folder)}


def take_over(handed: dict[str, Any]) -> None:
    """The next session of this process uses the server ``hand_over`` described."""
    _HANDED.append(handed)


class HandedServer(PrefectServer):
    """A server another process started for this session; stopped, and its folder removed, with the session.

    Started by a ``Forkserver``, its pid is known once it is forked: the forkserver writes it in its folder.
    A pid is taken for this server's only while that process writes to this server's log (its stdout):
    a pid freed and reused by another process is never signalled.
    """

    GRACE_S = 5.0  # from SIGTERM to SIGKILL

    def __init__(self, handed: dict[str, Any]) -> None:
        self.port = int(handed["port"])
        self._pid: int | None = None if handed.get("pid") is None else int(handed["pid"])
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.folder = Path(handed["folder"])
        self.log = self.folder / "server.log"
        self._forkserver = int(handed.get("forkserver") or 0)
        self._forkserver_log = Path(handed.get("forkserver_log") or self.log)  # the same, without a forkserver
        self._outs = {os.path.realpath(p) for p in (self.log, self._forkserver_log)}
        self._process = None
        self.started_at = self.ready_at = 0.0

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        """Its process; None while its forkserver has not forked it yet, 0 when the fork failed."""
        if self._pid is None:
            with contextlib.suppress(OSError, ValueError):
                self._pid = int((self.folder / Forkserver.PID_FILE).read_text())
        return self._pid

    def start(self) -> None:
        self.started_at = time.perf_counter()

    def wait(self, timeout: float = 60.0) -> None:
        if self.ready_at:
            return

        def gone() -> bool:  # not forked yet: it never will be when its forkserver is gone
            pid = self.pid
            return not is_serve(self._forkserver) if pid is None else not self._runs(pid)

        if not healthy(self.api_url, timeout, gone):
            raise ServerError(f"the Prefect test server did not answer:\n{self.log_tail()}")
        self.ready_at = time.perf_counter()
        save_template(self.folder / "prefect.db")

    def log_tail(self) -> str:
        own = log_tail(self.log)
        return own if own or not self._forkserver else log_tail(self._forkserver_log)  # never forked: it says why

    def stop(self) -> None:
        """Stop it (SIGTERM, as its starter would) and remove its folder; safe to call twice."""
        pid = self.pid  # None: not forked, and it will not be (its folder is gone: its forkserver ends the fork)
        if pid and self._runs(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
            if not self._ended(pid, self.GRACE_S):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)  # stuck in its shutdown
                self._ended(pid, self.GRACE_S)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _ended(self, pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._runs(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _runs(self, pid: int) -> bool:
        """``pid`` is this server's process, running: its stdout is this server's log (or, for an instant after
        the fork, still its forkserver's)."""
        try:
            out = os.readlink(f"/proc/{pid}/fd/1").removesuffix(" (deleted)")
        except OSError:  # gone, a zombie, or not ours to look at
            return False
        return out in self._outs
