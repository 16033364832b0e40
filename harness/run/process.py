"""What every Prefect server the harness runs shares: its settings, folder, program, health poll and liveness.

A server is one of three strategies (``ServerHandle``): the session's own
(``server.PrefectServer``), one kept for the next session (``kept``), or one
forked for a worker by a forkserver (``forked``). Each is the program
``_serve.py`` on a loopback port, with a folder of its own (on tmpfs where
there is one) holding a copy of the migrated template database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import httpx

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
    "PREFECT_SERVER_LOGGING_LEVEL": "ERROR",
}


class ServerHandle(Protocol):
    """A Prefect API server a session uses: started early, waited for when the first flow needs it."""

    api_url: str
    port: int
    started_at: float
    ready_at: float

    @property
    def home(self) -> Path:
        """The session's own PREFECT_HOME."""
        ...

    def environment(self) -> dict[str, str]:
        """Settings for the client process, to apply before Prefect is imported."""
        ...

    def start(self) -> None:
        """Start the server; returns at once."""
        ...

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the server answers."""
        ...

    def stop(self) -> None:
        """Stop it or let it go; safe to call twice."""
        ...


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "prefect-fault-harness"


def free_port() -> int:
    """A loopback port free now, for a server that binds it a moment later.

    Drawn below the kernel's ephemeral range where there is room: an outgoing
    connection's local port is drawn from that range, and one made between
    this check and the server's bind (Prefect's clients make many) could
    otherwise take the port ("address already in use").
    """
    low = _ephemeral_low()
    draw = random.SystemRandom()
    for _ in range(64 if low - FIRST_PORT >= 1024 else 0):
        port = draw.randrange(FIRST_PORT, low)
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    with socket.socket() as s:  # no room below the range: any free port, as the kernel draws it
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FIRST_PORT = 20_000  # below: ports services are often configured on


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def scratch_folder(prefix: str) -> Path:
    """A new folder for a server (or a forkserver): on tmpfs where there is one, so SQLite never waits for a disk."""
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=where))


def server_environment(home: Path, db: Path | None = None) -> dict[str, str]:
    """A server process's environment: this one's, the harness's settings, Prefect's own test-server markers.

    With ``db``, the server's database, made here: a copy of the migrated template when there is one.
    """
    env = {
        **os.environ,
        **SETTINGS,
        "PREFECT_HOME": str(home),
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    env.pop("PREFECT_API_URL", None)
    if db is not None:
        template = _template()
        if template is not None:
            shutil.copyfile(template, db)
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{db}"
        env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] = "false" if template is not None else "true"
    return env


def serve_program() -> str:
    return str(Path(__file__).with_name("_serve.py"))


def launch(
    args: list[str], env: dict[str, str], log: Path, *, stdin: int = subprocess.DEVNULL, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start the server program with ``args``, its output in ``log``, in a session of its own (Ctrl-C reaches
    the harness, which stops it itself)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, serve_program(), *args],
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )


def healthy(api_url: str, seconds: float, gone: Callable[[], bool] = lambda: False) -> bool:
    """Whether the server at ``api_url`` answers ``/health`` within ``seconds`` (False at once when ``gone``)."""
    deadline = time.monotonic() + seconds
    with httpx.Client(trust_env=False) as client:  # loopback: never through a proxy
        while time.monotonic() < deadline and not gone():
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{api_url}/health", timeout=1).status_code == 200:
                    return True
            time.sleep(0.02)
    return False


def is_serve(pid: int, *args: bytes) -> bool:
    """``pid`` runs the server program (with ``args`` on its command line): never a reused pid of another program."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"_serve.py") for a in argv) and all(a in argv for a in args)


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def template_path() -> Path:
    return cache_dir() / f"template-prefect-{version('prefect')}.db"


def _template() -> Path | None:
    path = template_path()
    return path if path.exists() else None


def save_template(db: Path) -> None:
    """Keep a migrated database as the template for later sessions (once, under a lock)."""
    path = template_path()
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
