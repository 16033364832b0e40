"""The oracle's reference runs: recorded for one Prefect (the newest tested), or run live once per test session.

Each reference module (``tests.fidelity.reference`` and the others in ``REFERENCES``) runs its cases on plain
Prefect in real time, in a subprocess. That is minutes of waiting, and it does not change while Prefect and the
cases stay the same: ``python -m tests.fidelity.record`` writes each reference's results to ``recorded/``,
keyed by the Prefect version and a digest of the oracle's sources (cases, idioms, references). A test session
uses a recording that matches the installed Prefect and the sources, and runs the reference live otherwise, or
always with ``--reference=live``; there, ``test_recordings.py`` checks that the recording still says what
plain Prefect does now.

A live reference runs once per test session, however many pytest-xdist workers ask for it: the first worker
to claim it (an exclusive create in the session's shared temporary folder, holding its pid) starts it when
its first test sets up, and every worker reads its results from that folder. A worker waiting for a run whose
owner died fails at once, naming it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prefect

from harness.run._serve import pid_exists  # the servers' own liveness check

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RECORDED = HERE / "recorded"
TIMEOUT_S = 900  # bound on one reference run, start-up and a loaded machine included
POLL_S = 0.1

# test module -> the reference module whose results it compares with
REFERENCES = {
    "tests.fidelity.test_fidelity": "tests.fidelity.reference",
    "tests.fidelity.test_api_fidelity": "tests.fidelity.api_reference",
    "tests.fidelity.test_crash_fidelity": "tests.fidelity.crash_reference",
    "tests.fidelity.test_function_fidelity": "tests.fidelity.function_reference",
}


class ReferenceFailed(Exception):
    """A reference run that exited with an error or ran past its time: the message holds its output's tail."""


@functools.cache
def sources_digest() -> str:
    """What a reference's results follow from on this side: every module of the oracle but its tests."""
    digest = hashlib.sha256()
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith("test_") or path.name in {"conftest.py", "record.py", "references.py"}:
            continue
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def recording_path(reference: str) -> Path:
    return RECORDED / f"{reference.rsplit('.', 1)[-1]}.json"


@functools.cache
def python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def recorded(reference: str) -> dict[str, Any] | None:
    """The recording of ``reference`` for the installed Prefect and the current sources, or None."""
    if staleness(reference) is not None:
        return None
    results: dict[str, Any] = json.loads(recording_path(reference).read_text())["results"]
    return results


def staleness(reference: str) -> str | None:
    """Why the recording of ``reference`` is not used here (None when it is)."""
    path = recording_path(reference)
    if not path.exists():
        return f"no recording {path.relative_to(ROOT)}"
    data = json.loads(path.read_text())
    if data.get("prefect") != prefect.__version__:
        return f"{path.relative_to(ROOT)} is Prefect {data.get('prefect')}'s, this is {prefect.__version__}"
    if data.get("python") != python():
        return f"{path.relative_to(ROOT)} was recorded on Python {data.get('python')}, this is {python()}"
    if data.get("sources") != sources_digest():
        return f"{path.relative_to(ROOT)} was recorded from other sources (python -m tests.fidelity.record)"
    return None


def spawn(reference: str, out: Path) -> subprocess.Popen[str]:
    """``python -m REFERENCE OUT`` in a session of its own (killed, it takes Prefect's server with it), without
    the calling process's Prefect settings (a harness session's, say) or a filter of the oracle's cases
    (``FIDELITY_*``): a reference runs every case."""
    return subprocess.Popen(
        [sys.executable, "-m", reference, str(out)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FIDELITY_"))},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def tail(output: str, lines: int = 60) -> str:
    return "\n".join(output.splitlines()[-lines:])


@dataclass
class LiveRun:
    """One reference subprocess this process started, and the thread that writes its status when it ends."""

    process: subprocess.Popen[str]
    thread: threading.Thread


@dataclass
class References:
    """The session's reference results: recorded, or live and shared through ``folder`` by every worker."""

    folder: Path
    live: bool
    owned: dict[str, LiveRun] = field(default_factory=dict)
    loaded: dict[str, dict[str, Any]] = field(default_factory=dict)

    def uses_recording(self, reference: str) -> bool:
        return not self.live and recorded(reference) is not None

    def start(self, reference: str) -> None:
        """Start the live run of ``reference`` unless a recording serves or another worker claimed it first."""
        if self.uses_recording(reference) or reference in self.owned:
            return
        try:
            claim = os.open(self.folder / f"{reference}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(claim, str(os.getpid()).encode())
        os.close(claim)
        out = self.folder / f"{reference}.json"
        process = spawn(reference, out)
        thread = threading.Thread(target=self._finish, args=(reference, process, time.perf_counter()), daemon=True)
        thread.start()
        self.owned[reference] = LiveRun(process, thread)

    def _finish(self, reference: str, process: subprocess.Popen[str], started: float) -> None:
        try:
            output, _ = process.communicate(timeout=TIMEOUT_S)
            status = {"returncode": process.returncode, "tail": tail(output)}
        except subprocess.TimeoutExpired:
            kill(process)
            output, _ = process.communicate()
            status = {"returncode": None, "tail": f"ran past {TIMEOUT_S} s\n{tail(output)}"}
        status["wall_s"] = round(time.perf_counter() - started, 1)
        temporary = self.folder / f"{reference}.status.tmp"
        temporary.write_text(json.dumps(status))
        os.replace(temporary, self.folder / f"{reference}.status")

    def results(self, reference: str) -> dict[str, Any]:
        """Every case's result of ``reference``: its recording, or its live run's (waited for)."""
        if reference in self.loaded:
            return self.loaded[reference]
        results = None if self.live else recorded(reference)
        if results is None:
            self.start(reference)
            results = self._wait(reference)
        self.loaded[reference] = results
        return results

    def _wait(self, reference: str) -> dict[str, Any]:
        status_file = self.folder / f"{reference}.status"
        deadline = time.monotonic() + TIMEOUT_S + 60
        while not status_file.exists():
            if time.monotonic() > deadline:
                raise ReferenceFailed(f"{reference} gave no results within {TIMEOUT_S + 60} s")
            owner = int((self.folder / f"{reference}.claim").read_text() or 0)
            if owner and not pid_exists(owner) and not status_file.exists():
                raise ReferenceFailed(f"{reference}: the worker running it (pid {owner}) exited before it ended")
            time.sleep(POLL_S)
        status = json.loads(status_file.read_text())
        out = self.folder / f"{reference}.json"
        if status["returncode"] != 0 or not out.exists():
            raise ReferenceFailed(f"{reference} exited with code {status['returncode']}:\n{status['tail']}")
        results: dict[str, Any] = json.loads(out.read_text())
        print(f"\n{reference}: {len(results)} case(s) in {status['wall_s']} s wall (live, start-up included)")
        return results

    def close(self, interrupted: bool) -> None:
        """Wait for the runs this process started (a worker may still need them), or kill them if interrupted."""
        for run in self.owned.values():
            if interrupted:
                kill(run.process)
            run.thread.join(TIMEOUT_S)


def kill(process: subprocess.Popen[str]) -> None:
    """The reference and what it started (its own session: Prefect's server)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
