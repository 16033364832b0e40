"""Entry point of the Prefect test server process (run by path, not as a module).

It is uvicorn serving Prefect's API app, plus one thread that ends the server
when the harness process that started it is gone, so that a killed test run
leaves no server (and no database folder) behind.

A kept server (``HARNESS_REUSE_SERVER=1``, see ``harness.run.kept``) has no
parent to follow: it is given its slot's state and lock files and an idle
limit, and exits, removing its slot and folder, once no session has held the
slot's lock for that long, or when its database is gone or its slot names
another server.

A forkserver (``--forkserver PARENT FOLDER [ALSO]``, see
``harness.run.server.Forkserver``) imports Prefect's server once and then
forks one server per request read on its standard input (a JSON line: port,
environment, log and pid files, owner), so that N servers cost one import
instead of N. It writes each fork's pid in the fork's folder; the fork takes
its own environment and settings and serves. A fork ends, removing its
folder, when stopped or when its owner (the harness process) is gone; the
forkserver ends at the end of its input, or when its parent is gone, then
removing ALSO too (the pool's PREFECT_HOME).
"""

import contextlib
import fcntl
import importlib.util
import json
import os
import select
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _folder() -> Path | None:
    """The server's own folder (its database's), when it is one the harness made."""
    url = os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL", "")
    folder = Path(url.partition(":///")[2]).parent
    return folder if folder.name.startswith("harness-server-") else None


def _remove_folder() -> None:
    folder = _folder()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    _remove_folder()
    os._exit(0)


def _names_me(state: Path) -> bool:
    try:
        return int(json.loads(state.read_text())["pid"]) == os.getpid()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _forget(state: Path, lock: Path) -> None:
    """Remove the slot (while holding its lock, so that no session takes it meanwhile) and the folder."""
    if _names_me(state):
        for path in (state, lock):
            with contextlib.suppress(OSError):
                path.unlink()
    _remove_folder()


def _exit_when_idle(state: Path, lock: Path, idle_s: float) -> None:
    """Exit once no session has held the slot for ``idle_s`` seconds, or the database or the slot is gone."""
    folder = _folder()
    database = None if folder is None else folder / "prefect.db"
    idle_since = time.time()
    step = min(max(idle_s / 10, 0.1), 5.0)
    while True:
        time.sleep(step)
        if (database is not None and not database.exists()) or not _names_me(state):
            _forget(state, lock)
            os._exit(0)
        with contextlib.suppress(OSError):
            idle_since = max(idle_since, state.stat().st_mtime)  # a session touches it when it lets go
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            _remove_folder()
            os._exit(0)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a session is using it
            idle_since = time.time()
            os.close(fd)
            continue
        if time.time() - idle_since >= idle_s:
            _forget(state, lock)
            os._exit(0)
        os.close(fd)  # releases the lock


def _exit_with(owner: int) -> None:
    """Remove the folder and exit once process ``owner`` is gone (a forked server: the harness process it serves).

    Not the forkserver, its parent: the servers outlive a forkserver that dies.
    """
    try:
        handle = os.pidfd_open(owner)
    except OSError:  # gone already, or no pidfd here: poll
        while pid_exists(owner):
            time.sleep(0.5)
    else:
        select.select([handle], [], [])
    _remove_folder()
    os._exit(0)


def pid_exists(pid: int) -> bool:
    """Process ``pid`` is there (someone else's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writes_wait_their_turn() -> None:
    """Every SQLite transaction of the server begins IMMEDIATE, as Prefect's own locking ones do.

    With the task-run recorder on, its writes and the API's interleave. A
    transaction begun DEFERRED that reads, then writes after another one has
    committed cannot upgrade its snapshot: SQLite fails it at once ("database
    is locked", no busy wait), the API answers 503 and the client retries
    after two seconds or more. Begun IMMEDIATE, it waits its turn under
    SQLite's busy timeout instead. What the API stores and answers is the
    same; only the stalls go.
    """
    from contextlib import asynccontextmanager

    def immediately(begin: Any) -> Any:
        @asynccontextmanager
        async def immediate(self: Any, session: Any, with_for_update: bool = False) -> Any:
            async with begin(self, session, with_for_update=True) as transaction:
                yield transaction

        return immediate

    where = "prefect.server.database.configurations:AioSqliteConfiguration.begin_transaction"
    _internals().wrap(_FOR_GOOD, where, immediately)  # for the life of this process


_FOR_GOOD = contextlib.ExitStack()  # what this process replaces until it ends


def _internals() -> Any:
    """``harness.run.internals``, loaded by path: this process imports nothing else of the harness."""
    return _sibling("internals")


def _sibling(module: str) -> Any:
    """The harness module ``harness.run.<module>``, loaded by path."""
    name = f"harness_run_{module}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{module}.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module_ = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module_)
    return sys.modules[name]


def _app() -> Any:
    """Prefect's API app, its leases on the lease clock (``_lease_clock``), whose route is put in front of it."""
    from prefect.server.api.server import create_app

    lease_clock = _sibling("_lease_clock")
    lease_clock.install(_FOR_GOOD, _internals().replace)
    return lease_clock.wrapped(create_app())


def _serve(port: int, kept: tuple[Path, Path, float] | None = None) -> None:
    if kept:
        state, lock, idle_s = kept
        threading.Thread(target=_exit_when_idle, args=(state, lock, idle_s), daemon=True).start()

        def stopped(signum: int, frame: object) -> None:
            # uvicorn shuts down, then raises the signal again: it ends up here
            _forget(state, lock)
            os._exit(0)

        signal.signal(signal.SIGTERM, stopped)
        signal.signal(signal.SIGINT, stopped)
    _writes_wait_their_turn()
    import uvicorn

    uvicorn.run(
        _app,
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )
    if kept:
        _forget(kept[0], kept[1])


def _forkserver(parent: int, folder: Path, also: Path | None) -> None:
    """Import Prefect's server once; fork a server per request line on stdin; return at EOF or when orphaned.

    No thread runs here: a fork copies only the thread that forks.
    """
    import prefect.server.api.server  # noqa: F401  (what every fork would otherwise import again)
    import uvicorn  # noqa: F401

    pending = b""
    closed = False  # an empty line: the harness closed it; end of input without one: the harness is gone
    while not closed and os.getppid() == parent:
        _reap()
        if not select.select([0], [], [], 0.5)[0]:
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending and not closed:
            line, _, pending = pending.partition(b"\n")
            closed = not line
            if not closed:
                _fork(line)
    # Its own folder goes; when the harness process was killed, also the folder it could not remove.
    for path in (folder, None if closed else also):
        if path is not None and path.name.startswith(("harness-forkserver-", "harness-home-")):
            shutil.rmtree(path, ignore_errors=True)


def _fork(line: bytes) -> None:
    """Fork the server ``line`` asks for and write its pid (atomically) in its folder."""
    spec: dict[str, Any] = {}
    try:
        spec = json.loads(line)
        pid = os.fork()
    except Exception:  # no fork (EAGAIN, ENOMEM): its log says why, and pid 0 tells its wait at once
        import traceback

        with contextlib.suppress(OSError, KeyError), open(spec["log"], "a") as log:
            traceback.print_exc(file=log)
        traceback.print_exc()
        with contextlib.suppress(OSError, KeyError):
            _write_pid(Path(spec["pid_file"]), 0)
        return
    if pid == 0:
        _forked(spec)
    try:
        _write_pid(Path(spec["pid_file"]), pid)
    except OSError as exc:
        # Its folder is gone (it was stopped before it could be forked), or full: no server. The fork is
        # not reaped before the next loop, so ``pid`` is still its own.
        if not isinstance(exc, FileNotFoundError):
            print(f"server on port {spec['port']}: its pid cannot be written ({exc}); stopped", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)


def _reap() -> None:
    """Collect the forks that have ended (their exit status is nobody's business here)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _write_pid(path: Path, pid: int) -> None:
    path.with_suffix(".tmp").write_text(str(pid))
    os.replace(path.with_suffix(".tmp"), path)  # whole or not there: never read half-written


def _forked(spec: dict[str, Any]) -> None:
    """One server, in a fork of the forkserver: its own streams, environment and settings, then serve."""
    code = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # not the forkserver's requests
        log = os.open(str(spec["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.clear()
        os.environ.update(spec["env"])
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()  # the settings were read at import, from the forkserver's environment
        threading.Thread(target=_exit_with, args=(int(spec["owner"]),), daemon=True).start()

        def stopped(signum: int, frame: object) -> None:
            # uvicorn shuts down, then raises the signal again: it ends up here, and its folder goes with it
            _remove_folder()
            os._exit(0)

        signal.signal(signal.SIGTERM, stopped)
        _serve(int(spec["port"]))
        _remove_folder()
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()  # its log, which its wait shows
    finally:
        os._exit(code)  # never back into the forkserver's loop


def main() -> None:
    if sys.argv[1] == "--forkserver":
        _forkserver(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
        os._exit(0)  # no interpreter teardown of all that Prefect imported: nothing here needs it
    port, parent = int(sys.argv[1]), int(sys.argv[2])
    if parent:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    kept = (Path(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5])) if len(sys.argv) > 3 else None
    _serve(port, kept)


if __name__ == "__main__":
    main()
