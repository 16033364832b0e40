"""The harness worker program: one session, jobs read from a pipe, run one at a time on the main thread.

Started as ``python -m harness.parallel._worker IN OUT`` by a local pool or
by the Dask worker plugin. Runs execute on this process's main thread:
Prefect enforces ``timeout_seconds`` with SIGALRM only there, and respx and
the network guard are process-wide. On SIGTERM, on end of input, or when the
process that started it is gone, it closes its session (and so its server).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.parallel.jobs import Failed, portable
from harness.run.pipes import receive, send


def _stop(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second request must not cut the close short
    raise SystemExit(128 + signum)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)  # the main thread closes the session


def _adopt(options: dict[str, Any]) -> None:
    """Import and resolve as the feeding process does: its sys.path first, its folder, where they exist here."""
    own = [p for p in sys.path if p not in options["sys_path"]]
    sys.path[:] = [p for p in options["sys_path"] if not p or Path(p).exists()] + own
    cwd = Path(options["cwd"])
    if cwd.is_dir():
        os.chdir(cwd)


def run_job(session: Any, payload: bytes, where: str) -> tuple[bool, Any]:
    """(ok, value) of one pickled job, or (False, ``Failed``) naming this worker."""
    try:
        fn, args = pickle.loads(payload)
        value = fn(session, *args)
    except Exception as exc:
        return False, Failed.of(exc, where)
    try:
        pickle.dumps(value)
    except Exception:
        value = portable(value)
    return True, value


def main() -> None:
    inbox, outbox = int(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGTERM, _stop)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        _work(inbox, outbox)
    finally:
        tmp = Path(os.environ.get("TMPDIR", ""))
        if tmp.name.startswith("harness-worker-"):  # its own, made by the pool: gone even if the pool is killed
            shutil.rmtree(tmp, ignore_errors=True)


def _work(inbox: int, outbox: int) -> None:
    options = receive(inbox)
    _adopt(options)
    if not options.get("verbose"):
        # Before Prefect is first imported: its logging is configured at import.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    from harness.run.forked import take_over
    from harness.run.session import Session

    if "server" in options:
        take_over(options["server"])  # started by the process that feeds this one
    session = Session(**options["session"])
    try:
        session.start()  # the server boots while the first job is on its way
        where = f"worker process {os.getpid()} on {socket.gethostname()}"
        send(outbox, ("ready", where))
        while True:
            try:
                message = receive(inbox)
            except EOFError:
                return
            if message[0] == "stop":
                return
            _, job_id, payload = message
            ok, value = run_job(session, payload, where)
            try:
                send(outbox, ("done", job_id, ok, value))
            except BrokenPipeError:
                return
            except Exception as exc:  # a value that still does not pickle
                send(outbox, ("done", job_id, False, Failed.of(exc, where)))
    finally:
        # Already closing: a request to stop (its parent gone, while its input ended too) must not cut the
        # close short, which would leave the server's folder behind.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        session.close()


if __name__ == "__main__":
    main()
