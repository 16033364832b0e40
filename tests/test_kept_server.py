"""A server kept between sessions (HARNESS_REUSE_SERVER=1): reused, never shared at once, gone when idle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.run import kept
from harness.run.kept import KeptServer, session_server
from harness.run.process import template_path
from harness.run.server import PrefectServer
from tests.test_cleanup import run_pytest, wait_until

SCENARIO = """
name: stars recover
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 500}, {json: {stargazers_count: 7}}]
expect:
  tasks: {get_stars: {state: Completed, retries: 1}}
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache folder of the test's own (slots included), with the migrated template database when there is one."""
    template = template_path()
    root = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    if template.exists():
        template_path().parent.mkdir(parents=True)
        shutil.copyfile(template, template_path())
    yield root
    for pid in servers(root):  # a failed test must not leave servers running
        os.kill(pid, 15)


def servers(root: Path) -> list[int]:
    """Kept server processes whose slot is under ``root``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"_serve.py") for a in args) and any(str(root).encode() in a for a in args):
                found.append(int(proc.name))
    return found


def slots(root: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((root / "prefect-fault-harness" / "servers").glob("*.json"))]


def harness_run(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("harness")), "run", "s.yaml"],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_without_the_variable_a_session_starts_its_own_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt-in: unset, 0 or empty, a session's server is its own (stopped with it, tests/test_cleanup.py)."""
    for value in (None, "", "0", "no"):
        if value is None:
            monkeypatch.delenv(kept.REUSE, raising=False)
        else:
            monkeypatch.setenv(kept.REUSE, value)
        assert not kept.reuse_requested()
    server = session_server()
    assert type(server) is PrefectServer
    server.stop()


def test_the_idle_limit_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """HARNESS_SERVER_IDLE_S in seconds, 600 by default or when it is not a number."""
    monkeypatch.delenv(kept.IDLE, raising=False)
    assert kept.idle_limit() == 600
    monkeypatch.setenv(kept.IDLE, "2.5")
    assert kept.idle_limit() == 2.5
    monkeypatch.setenv(kept.IDLE, "soon")
    assert kept.idle_limit() == 600


@pytest.mark.slow
def test_the_next_session_reuses_the_server(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`harness run` leaves its server running; pytest, then `harness run` again, reuse it: same port and pid."""
    (tmp_path / "s.yaml").write_text(SCENARIO)
    env = {kept.REUSE: "1", kept.IDLE: "120", "XDG_CACHE_HOME": str(cache)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # for the pytest session below
    first = harness_run(tmp_path, env)
    assert first.returncode == 0, first.stdout + first.stderr
    (slot,) = slots(cache)
    assert servers(cache) == [slot["pid"]], "the server outlives the command that started it"
    # pytest is a session too: it claims the same server
    (tmp_path / "project").mkdir()
    proc = run_pytest(tmp_path / "project", SCENARIO)
    out, _ = proc.communicate(timeout=180)
    assert b"1 passed" in out, out.decode()[-2000:]
    second = harness_run(tmp_path, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert slots(cache) == [slot], "the same server (port and pid) served all three sessions"
    assert servers(cache) == [slot["pid"]]


@pytest.mark.slow
def test_an_idle_kept_server_exits_and_leaves_nothing(tmp_path: Path, cache: Path) -> None:
    """With a 5 s idle limit, after the limit no server process, slot or folder is left."""
    (tmp_path / "s.yaml").write_text(SCENARIO)
    # 5 s: room for a loaded machine between the command's end and the look at its slot below
    done = harness_run(tmp_path, {kept.REUSE: "1", kept.IDLE: "5", "XDG_CACHE_HOME": str(cache)})
    assert done.returncode == 0, done.stdout + done.stderr
    (slot,) = slots(cache)  # this test's server (another test's may run beside it): its folder
    folder = Path(str(slot["folder"]))
    assert folder in kept_folders()
    assert wait_until(lambda: servers(cache) == [] and slots(cache) == [], 60), (servers(cache), slots(cache))
    assert not folder.exists()


def kept_folders() -> set[Path]:
    """Kept servers' folders (their databases), on tmpfs or in the temporary folder."""
    return {p for root in (Path("/dev/shm"), Path(tempfile.gettempdir())) for p in root.glob("harness-server-kept-*")}


@pytest.mark.slow
def test_two_sessions_at_once_never_share_a_server(cache: Path) -> None:
    """While one session holds a kept server, another gets a different one; released, it is reused."""
    first = KeptServer(idle_s=6)  # long enough that a loaded machine still reaches `third` before they exit
    first.start()
    second = KeptServer(idle_s=6)
    second.start()
    try:
        first.wait()
        second.wait()
        assert first.port != second.port and first.pid != second.pid
        assert not first.reused and not second.reused
        assert first.home != second.home
    finally:
        first.stop()
        second.stop()
    third = KeptServer(idle_s=6)
    try:
        assert third.reused and third.pid in (first.pid, second.pid)
        third.wait()
    finally:
        third.stop()
    assert wait_until(lambda: servers(cache) == [], 60), servers(cache)


@pytest.mark.slow
def test_a_kept_server_exits_when_its_database_is_gone(cache: Path) -> None:
    """Its database removed (a cleaned /dev/shm, say), the server exits and the next session starts another."""
    server = KeptServer(idle_s=600)
    server.start()
    try:
        server.wait()
    finally:
        server.stop()
    pid = server.pid
    (Path(str(slots(cache)[0]["folder"])) / "prefect.db").unlink()
    assert wait_until(lambda: pid not in servers(cache), 60)
    again = KeptServer(idle_s=1)
    try:
        assert not again.reused
    finally:
        again.stop()


def test_a_servers_port_is_drawn_below_the_ephemeral_range() -> None:
    """No outgoing connection can take a server's port between the draw and the server's bind: connections draw
    their local ports from the kernel's ephemeral range, and the server's is drawn below it."""
    import socket

    from harness.run.process import FIRST_PORT, _ephemeral_low, free_port

    low = _ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert all(FIRST_PORT <= p < low for p in ports), (ports, low)
    assert len(ports) > 10  # drawn at random, not one after another
    for port in list(ports)[:3]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free, as drawn
