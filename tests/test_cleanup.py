"""Nothing left behind: no server process, no temporary file, also after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

HANGS = """
name: hangs until interrupted
flow: tests.flows:hanging_flow
parameters: {{marker: "{marker}"}}
"""

PASSES_AND_RAISES = """
name: writes a file
flow: tests.flows:file_writer
---
name: interrupted inside a task
flow: tests.flows:interrupted_flow
"""


def leftovers(pid: int, tmp: Path) -> set[str]:
    """What the harness process ``pid`` left: its temporary folders and its server process."""
    found = {str(p) for p in (tmp / "tmp").glob("harness-*")}
    shm = Path("/dev/shm")
    if shm.is_dir():
        found |= {str(p) for p in shm.glob(f"harness-server-{pid}-*")}
    found |= {str(p) for p in Path(tempfile.gettempdir()).glob(f"harness-server-{pid}-*")}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"_serve.py") for a in args) and str(pid).encode() in args:
                found.add(f"process {proc.name}")
    return found


def run_pytest(tmp: Path, text: str, *args: str) -> subprocess.Popen[bytes]:
    (tmp / "scenarios").mkdir()
    (tmp / "scenarios" / "s.yaml").write_text(text)
    root = Path(__file__).resolve().parent.parent
    (tmp / "tmp").mkdir()
    env = {**os.environ, "PYTHONPATH": str(root), "TMPDIR": str(tmp / "tmp")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp),
            str(tmp / "scenarios"),
            *args,
        ],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_session_leaves_nothing_behind(tmp_path: Path) -> None:
    """After a session with a passing flow and one interrupted by a BaseException: no process, no file."""
    proc = run_pytest(tmp_path, PASSES_AND_RAISES)
    out, _ = proc.communicate(timeout=120)
    assert b"1 passed" in out, out.decode()[-2000:]
    # the server's exit is reaped asynchronously: wait for it, up to a bound
    assert wait_until(lambda: leftovers(proc.pid, tmp_path) == set(), 10), leftovers(proc.pid, tmp_path)


def test_ctrl_c_stops_the_server_and_removes_its_files(tmp_path: Path) -> None:
    """SIGINT while a scenario hangs: the session ends, the server stops, the files go."""
    marker = tmp_path / "hanging"
    proc = run_pytest(tmp_path, HANGS.format(marker=marker), "--scenario-timeout=0")
    # the flow writes the marker once its task hangs, with the server up
    assert wait_until(marker.exists, 90), "the scenario never started hanging"
    assert any(p.startswith("process") for p in leftovers(proc.pid, tmp_path)), "no server while the scenario runs"
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the session did not end after Ctrl-C")
    assert wait_until(lambda: leftovers(proc.pid, tmp_path) == set(), 10), leftovers(proc.pid, tmp_path)
