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

import httpx

from harness._errors import ServerError
from harness.run._serve import pid_exists
from harness.run.server import SETTINGS, Forkserver, PrefectServer, _free_port, _save_template, _template, cache_dir

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


_HANDED: list[dict[str, Any]] = []  # a server started for this process by the one that feeds it (a worker's)


def session_server() -> PrefectServer:
    """The server a new session uses: one handed over, a kept one when ``HARNESS_REUSE_SERVER`` asks, else its own."""
    if _HANDED:
        return HandedServer(_HANDED.pop())
    return KeptServer() if reuse_requested() else PrefectServer()


def hand_over(server: PrefectServer) -> dict[str, Any]:
    """What another process needs to use ``server``, started here (a worker pool starts its workers' servers
    at once, before each worker has even imported the harness)."""
    assert server._process is not None, "start the server first"
    return {"port": server.port, "pid": server._process.pid, "folder": str(server._dir)}


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
        self._dir = Path(handed["folder"])
        self._log = self._dir / "server.log"
        self._forkserver = int(handed.get("forkserver") or 0)
        self._forkserver_log = Path(handed.get("forkserver_log") or self._log)  # the same, without a forkserver
        self._outs = {os.path.realpath(p) for p in (self._log, self._forkserver_log)}
        self._process = None
        self.started_at = self.ready_at = 0.0

    @property
    def pid(self) -> int | None:
        """Its process; None while its forkserver has not forked it yet, 0 when the fork failed."""
        if self._pid is None:
            with contextlib.suppress(OSError, ValueError):
                self._pid = int((self._dir / Forkserver.PID_FILE).read_text())
        return self._pid

    def start(self) -> None:
        self.started_at = time.perf_counter()

    def wait(self, timeout: float = 60.0) -> None:
        if self.ready_at:
            return
        deadline = time.monotonic() + timeout
        while not _healthy(self.api_url, 0.2):
            pid = self.pid
            # not forked yet: it never will be when its forkserver is gone
            gone = not _alive_serve(self._forkserver) if pid is None else not self._runs(pid)
            if gone or time.monotonic() > deadline:
                raise ServerError(f"the Prefect test server did not answer:\n{self._log_tail()}")
        self.ready_at = time.perf_counter()
        _save_template(self._dir / "prefect.db")

    def _log_tail(self) -> str:
        own = super()._log_tail()
        if own or not self._forkserver:
            return own
        try:  # it was never forked: its forkserver says why
            return "\n".join(self._forkserver_log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

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
        shutil.rmtree(self._dir, ignore_errors=True)

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

    @property
    def state_file(self) -> Path:
        return self._slot

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
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        shm = Path("/dev/shm")
        where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self._dir = Path(tempfile.mkdtemp(prefix=f"harness-server-kept-{self.key}-", dir=where))
        self._log = self._dir / "server.log"

    def _adopt(self, slot: Path, fd: int, state: dict[str, Any]) -> None:
        self._slot, self._lock, self.reused = slot, fd, True
        self.port, self.pid = int(state["port"]), int(state["pid"])
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._dir = Path(state["folder"])
        self._log = self._dir / "server.log"

    def start(self) -> None:
        """Launch the slot's server, unless it is a kept one already running; returns at once."""
        self.started_at = time.perf_counter()
        atexit.register(self.stop)
        if self.reused or self._process is not None:
            return
        db = self._dir / "prefect.db"
        template = _template()
        if template is not None:
            shutil.copyfile(template, db)
        env = {
            **os.environ,
            **SETTINGS,
            "PREFECT_HOME": str(self._dir / "home"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}",
            "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false" if template is not None else "true",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        for key in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):  # a session's throwaway CA: never trusted beyond it
            env.pop(key, None)
        lock = self._slot.with_suffix(".lock")
        serve = Path(__file__).with_name("_serve.py")
        with open(self._log, "wb") as out:
            self._process = subprocess.Popen(
                [sys.executable, str(serve), str(self.port), "0", str(self._slot), str(lock), str(self.idle_s)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not in the terminal's process group: it outlives the session
                cwd=self._dir,
            )
        _LAUNCHED.append(self._process)
        self.pid = self._process.pid
        state = {"port": self.port, "pid": self.pid, "folder": str(self._dir), "key": self.key}
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
        if _healthy(self.api_url, 10.0):
            self.ready_at = time.perf_counter()
            return
        # A kept server that no longer answers: stop it and start one in the same slot.
        _terminate(self.pid)
        _forget(self._slot, {"folder": str(self._dir)}, keep_lock=True)
        self._fresh()
        self.start()
        super().wait(timeout)

    def stop(self) -> None:
        """Let the server go for the next session (it exits when idle); safe to call twice."""
        fd, self._lock = self._lock, None
        if fd is None:
            return
        alive = self.pid and pid_exists(self.pid) and (self._process is None or self._process.poll() is None)
        if alive and self.ready_at:
            with contextlib.suppress(OSError):
                os.utime(self._slot)  # the idle time counts from now
        else:  # it never came up, or died: no slot may name it
            _terminate(self.pid)
            _forget(self._slot, {"folder": str(self._dir)}, keep_lock=True)
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
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (KeyError, ValueError, TypeError, OSError):
        return False
    return any(a.endswith(b"_serve.py") for a in args) and port.encode() in args and (folder / "prefect.db").exists()


def _healthy(api_url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    with httpx.Client(trust_env=False) as client:  # loopback: never through a proxy
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{api_url}/health", timeout=1).status_code == 200:
                    return True
            time.sleep(0.02)
    return False


def _terminate(pid: int) -> None:
    if pid and _alive_serve(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)


def _alive_serve(pid: int) -> bool:
    try:
        return any(a.endswith(b"_serve.py") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
    except OSError:
        return False


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
