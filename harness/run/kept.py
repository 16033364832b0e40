"""A Prefect server kept for the next session, opt-in: ``HARNESS_REUSE_SERVER=1``.

Starting the server is most of a short session's time (importing Prefect's
server alone takes seconds). With the variable set, a session leaves its
server running and the next session claims it. Each kept server has a slot
in the harness's cache folder, ``servers/<key>-<id>.json`` (port, pid,
folder) and ``.lock``; the key is Prefect's version, the harness's version,
its server settings and the Python environment, so a server is only reused
by a session that would have started the same one. A session holds the
slot's lock (``flock``) while it runs, so two sessions at once never share a
server: the second finds the first's slot locked and claims another, or
starts one. A kept server exits by itself, removing its slot and folder,
after ``HARNESS_SERVER_IDLE_S`` seconds (default 600) without a session, and
when its database or its slot is gone. Without the variable, nothing
outlives the session.

What a kept server keeps: its database (earlier sessions' flow runs, and any
block or variable a flow wrote). Each session still gets a fresh
``PREFECT_HOME`` of its own (results, caches).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harness.run.forked import handed
from harness.run.process import (
    SETTINGS,
    ServerHandle,
    cache_dir,
    free_port,
    healthy,
    is_serve,
    launch,
    scratch_folder,
    server_environment,
)
from harness.run.server import PrefectServer

REUSE = "HARNESS_REUSE_SERVER"
IDLE = "HARNESS_SERVER_IDLE_S"
DEFAULT_IDLE_S = 600.0

_LAUNCHED: list[subprocess.Popen[bytes]] = []  # kept servers started here: never reaped while they serve


def reuse_requested() -> bool:
    """Whether ``HARNESS_REUSE_SERVER`` asks for a kept server (1, true, yes)."""
    return os.environ.get(REUSE, "").strip().lower() in ("1", "true", "yes", "on")


def idle_limit() -> float:
    """``HARNESS_SERVER_IDLE_S``: seconds a kept server waits for a session before it exits (default 600)."""
    try:
        return max(float(os.environ.get(IDLE, DEFAULT_IDLE_S)), 0.5)
    except ValueError:
        return DEFAULT_IDLE_S


def server_key() -> str:
    """What a kept server must match to be reused: Prefect, the harness, their settings, the environment."""
    what = {
        "prefect": version("prefect"),
        "harness": version("prefect-fault-harness"),
        "settings": SETTINGS,
        "environment": sys.prefix,  # the virtualenv (python and python3 are one interpreter)
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def slots_dir() -> Path:
    return cache_dir() / "servers"


def session_server() -> ServerHandle:
    """The server a new session uses: one handed over, a kept one when ``HARNESS_REUSE_SERVER`` asks, else its own."""
    server = handed()
    if server is not None:
        return server
    return KeptServer() if reuse_requested() else PrefectServer()


class KeptServer(PrefectServer):
    """A server claimed for this session: a free kept one, else a new one that outlives the session."""

    def __init__(self, idle_s: float | None = None) -> None:
        self.idle_s = idle_limit() if idle_s is None else idle_s
        self.key = server_key()
        self.reused = False
        self.pid = 0
        self._process: subprocess.Popen[bytes] | None = None
        self.started_at = self.ready_at = 0.0
        self._lock: int | None = None
        self._home = Path(tempfile.mkdtemp(prefix="harness-home-"))  # this session's own PREFECT_HOME
        self._claim()

    @property
    def home(self) -> Path:
        return self._home

    def _claim(self) -> None:
        """Lock a free slot whose server is alive, else lock a new slot for a server ``start`` launches."""
        slots = slots_dir()
        slots.mkdir(parents=True, exist_ok=True)
        for slot in sorted(slots.glob(f"{self.key}-*.json")):
            fd = _try_lock(slot.with_suffix(".lock"))
            if fd is None:
                continue  # another session is using it
            state = _read(slot)
            if state is not None and _alive(state):
                self._adopt(slot, fd, state)
                return
            _forget(slot, state)
            os.close(fd)
        slot = slots / f"{self.key}-{uuid.uuid4().hex[:12]}.json"
        fd = _try_lock(slot.with_suffix(".lock"))
        if fd is None:  # pragma: no cover - a fresh name nobody else knows
            raise OSError(f"cannot lock {slot.with_suffix('.lock')}")
        self._slot, self._lock = slot, fd
        self._fresh()

    def _fresh(self) -> None:
        """A port and a folder for a server this session starts (tmpfs where there is one, as for any server)."""
        self.reused, self._process = False, None
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.folder = scratch_folder(f"harness-server-kept-{self.key}-")
        self.log = self.folder / "server.log"

    def _adopt(self, slot: Path, fd: int, state: dict[str, Any]) -> None:
        self._slot, self._lock, self.reused = slot, fd, True
        self.port, self.pid = int(state["port"]), int(state["pid"])
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.folder = Path(state["folder"])
        self.log = self.folder / "server.log"

    def start(self) -> None:
        """Launch the slot's server, unless it is a kept one already running; returns at once."""
        self.started_at = time.perf_counter()
        atexit.register(self.stop)
        if self.reused or self._process is not None:
            return
        env = server_environment(self.folder / "home", self.folder / "prefect.db")
        for key in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):  # a session's throwaway CA: never trusted beyond it
            env.pop(key, None)
        lock = self._slot.with_suffix(".lock")
        # Its own session (start_new_session): not in the terminal's process group, it outlives the session.
        self._process = launch(
            [str(self.port), "0", str(self._slot), str(lock), str(self.idle_s)], env, self.log, cwd=self.folder
        )
        _LAUNCHED.append(self._process)
        self.pid = self._process.pid
        state = {"port": self.port, "pid": self.pid, "folder": str(self.folder), "key": self.key}
        tmp = self._slot.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._slot)

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the server answers; a kept one that does not is replaced by a new one."""
        if self.ready_at:
            return
        if not self.reused:
            super().wait(timeout)
            return
        if healthy(self.api_url, 10.0):
            self.ready_at = time.perf_counter()
            return
        # A kept server that no longer answers: stop it and start one in the same slot.
        _terminate(self.pid)
        _forget(self._slot, {"folder": str(self.folder)}, keep_lock=True)
        self._fresh()
        self.start()
        super().wait(timeout)

    def stop(self) -> None:
        """Let the server go for the next session (it exits when idle); safe to call twice."""
        fd, self._lock = self._lock, None
        if fd is None:
            return
        alive = bool(self.pid) and is_serve(self.pid or 0) and (self._process is None or self._process.poll() is None)
        if alive and self.ready_at:
            with contextlib.suppress(OSError):
                os.utime(self._slot)  # the idle time counts from now
        else:  # it never came up, or died: no slot may name it
            _terminate(self.pid)
            _forget(self._slot, {"folder": str(self.folder)}, keep_lock=True)
        os.close(fd)
        shutil.rmtree(self._home, ignore_errors=True)


def _try_lock(path: Path, attempts: int = 25) -> int | None:
    """An exclusive lock on ``path``; None when a session holds it (a server's idle probe is waited out)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            time.sleep(0.01)  # a kept server probes it for an instant; a session holds it for its whole life
    os.close(fd)
    return None


def _read(slot: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(slot.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _alive(state: dict[str, Any]) -> bool:
    """The slot's server process is there (the same process: its command line names the slot's port)."""
    try:
        pid, port, folder = int(state["pid"]), str(state["port"]), Path(state["folder"])
    except (KeyError, ValueError, TypeError):
        return False
    return is_serve(pid, port.encode()) and (folder / "prefect.db").exists()


def _terminate(pid: int | None) -> None:
    if pid and is_serve(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _forget(slot: Path, state: dict[str, Any] | None, keep_lock: bool = False) -> None:
    """Remove a slot whose server is gone (its state, its folder; its lock file unless still held here)."""
    with contextlib.suppress(OSError):
        slot.unlink()
    if not keep_lock:
        with contextlib.suppress(OSError):
            slot.with_suffix(".lock").unlink()
    folder = (state or {}).get("folder")
    if folder and Path(folder).name.startswith("harness-server-kept-"):
        shutil.rmtree(folder, ignore_errors=True)
