"""The Prefect test server: one per session, started early, on a copied template database.

A fresh Prefect database needs its migrations run, which costs seconds; the
first session migrates a template once (keyed by Prefect's version) and every
later session copies it. The server is started as soon as the session knows it
will run a scenario and is waited for only when the first flow needs it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from harness._errors import ServerError

# Settings for the harness's server, and for its process while a scenario runs: what costs time and is not needed.
SETTINGS: dict[str, str] = {
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_SERVER_SERVICES_CLEANUP_RECONCILER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_EVENTS_STREAM_OUT_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "ERROR",
}


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "prefect-fault-harness"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrefectServer:
    """A Prefect API server in a subprocess, on loopback, with its own database."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        # tmpfs where there is one: the server's SQLite writes then never wait for a disk.
        shm = Path("/dev/shm")
        where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self._dir = Path(tempfile.mkdtemp(prefix=f"harness-server-{os.getpid()}-", dir=where))
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self._dir / "server.log"
        self.started_at = 0.0
        self.ready_at = 0.0

    @property
    def home(self) -> Path:
        """A private PREFECT_HOME for the session: nothing touches the user's."""
        return self._dir / "home"

    def environment(self) -> dict[str, str]:
        """Settings for the client process, to apply before Prefect is imported."""
        return {**SETTINGS, "PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home)}

    def start(self) -> None:
        """Start the server process; returns at once (see ``wait``)."""
        atexit.register(self.stop)
        self.started_at = time.perf_counter()
        self._process = _uvicorn(self.port, self.process_environment(), self._log)

    def process_environment(self) -> dict[str, str]:
        """The server process's environment; its database is made here (a copy of the template, when there is one)."""
        db = self._dir / "prefect.db"
        template = _template()
        migrate = "true"
        if template is not None:
            shutil.copyfile(template, db)
            migrate = "false"
        env = {
            **_server_environment(self.home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}",
            "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": migrate,
        }
        return env

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the server answers ``/health``."""
        if self.ready_at:
            return
        if self._process is None:
            self.start()
        assert self._process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False) as client:  # loopback: never through a proxy
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise ServerError(
                        f"the Prefect test server exited with code {self._process.returncode}:\n{self._log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.api_url}/health", timeout=1).status_code == 200:
                        self.ready_at = time.perf_counter()
                        _save_template(self._dir / "prefect.db")
                        return
                time.sleep(0.02)
        self.stop()
        raise ServerError(f"the Prefect test server did not answer within {timeout:.0f} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server and remove its database; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def _server_environment(home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        **SETTINGS,
        "PREFECT_HOME": str(home),
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    env.pop("PREFECT_API_URL", None)
    return env


def _serve_py() -> str:
    return str(Path(__file__).with_name("_serve.py"))


def _uvicorn(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, _serve_py(), str(port), str(os.getpid())],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the harness, which stops the server itself
        )


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
        shm = Path("/dev/shm")
        where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        folder = self._dir = Path(tempfile.mkdtemp(prefix=f"harness-forkserver-{os.getpid()}-", dir=where))
        self.log = folder / "forkserver.log"
        args = [sys.executable, _serve_py(), "--forkserver", str(os.getpid()), str(folder)]
        with open(self.log, "wb") as out:
            self._process = subprocess.Popen(
                args + ([str(self._also)] if self._also is not None else []),
                env=_server_environment(folder / "home"),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the harness, which closes it
            )

    @property
    def pid(self) -> int:
        assert self._process is not None, "closed"
        return self._process.pid

    def start(self) -> dict[str, Any]:
        """A new server, on its own port, folder and database, forked as soon as the forkserver has imported.

        Returns what ``harness.run.kept.HandedServer`` takes: port, folder, the forkserver's pid and log.
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
                "log": str(server._log),
                "pid_file": str(server._dir / self.PID_FILE),
                "owner": os.getpid(),
            }
            self._process.stdin.write(json.dumps(spec).encode() + b"\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # it died meanwhile: the server's wait says so, with the forkserver's log
        except BaseException:
            shutil.rmtree(server._dir, ignore_errors=True)  # handed to no one
            raise
        return {
            "port": server.port,
            "pid": None,
            "folder": str(server._dir),
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


def _template_path() -> Path:
    return cache_dir() / f"template-prefect-{version('prefect')}.db"


def _template() -> Path | None:
    path = _template_path()
    return path if path.exists() else None


def _save_template(db: Path) -> None:
    """Keep a migrated database as the template for later sessions (once, under a lock)."""
    path = _template_path()
    if path.exists() or not db.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            # The server holds the database open; SQLite's backup API copies it consistently.
            import sqlite3

            with contextlib.closing(sqlite3.connect(db)) as src, contextlib.closing(sqlite3.connect(tmp)) as dst:
                src.backup(dst)
            os.replace(tmp, path)
