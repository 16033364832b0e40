"""A good neighbour: a user's own test suite passes beside scenario files, in every order and mode.

``tests/neighbour/`` is a user's project: a flow package, three scenarios, and
tests of the kinds a Prefect project keeps (a session-scoped
``prefect_test_harness()`` reading task runs and logs back from its server,
respx's decorator and fixture, the environment and trust store compared with a
plain subprocess, a local HTTP server called with requests, httpx, urllib and
aiohttp). Each mode runs it in a fresh ``pytest`` process.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Scenario, Session

PROJECT = Path(__file__).with_name("neighbour")
USER_TESTS = 13
SCENARIOS = 3

MODES = {
    "user tests alone": (["tests/"], USER_TESTS),
    "everything": ([], USER_TESTS + SCENARIOS),
    "user tests first": (["tests/", "scenarios/"], USER_TESTS + SCENARIOS),
    "scenarios first": (["scenarios/", "tests/"], USER_TESTS + SCENARIOS),
    "two xdist workers": (["-n", "2"], USER_TESTS + SCENARIOS),
    "plugin off": (["-p", "no:harness"], USER_TESTS),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_the_users_tests_and_the_scenarios_pass_together(mode: str, tmp_path: Path) -> None:
    """Every user test passes, and so does every scenario, whatever runs first; nothing is logged in error."""
    args, expected = MODES[mode]
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PREFECT_")}
    env["HOME"] = str(home)  # the user's own ~/.prefect, apart from this machine's
    result = subprocess.run(
        # -s: Prefect's own console log (a worker's errors, say) reaches the output even for passing tests
        [str(Path(sys.executable).with_name("pytest")), "-p", "no:cacheprovider", "-q", "-s", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert re.search(rf"\b{expected} passed\b", result.stdout), output[-3000:]
    assert "failed" not in result.stdout
    assert "EventsWorker" not in output and "matched none" not in output, output[-6000:]


class _OtherServer(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.paths.append(self.path)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def other_prefect_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A stand-in for the user's own Prefect test server, named by PREFECT_API_URL as prefect_test_harness names it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherServer)
    _OtherServer.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def test_another_prefect_servers_traffic_passes_through_and_is_no_call(
    harness_session: Session, scenario_from: Callable[[str], Scenario], other_prefect_api: str
) -> None:
    """Requests to another Prefect server of the process reach it, through respx and the guard, and are not calls."""
    s = scenario_from(f"""
name: beside another server
flow: tests.flows:beside_another_server
parameters: {{url: "https://api.example.com/x", other: "{other_prefect_api}"}}
endpoints:
  - request: GET https://api.example.com/x
    responses: [{{status: 204}}]
""")
    outcome = harness_session.run(s)
    assert outcome.flow.name == "Completed", outcome.flow
    assert outcome.result == [204, 200, 200]
    assert _OtherServer.paths == ["/api/flows/x", "/api/events/in"]
    assert [c.url for c in outcome.calls] == ["https://api.example.com/x"]
    assert not outcome.unmatched and not outcome.blocked


def test_the_users_events_worker_is_drained_before_a_run_and_none_is_left_after(
    harness_session: Session, scenario_from: Callable[[str], Scenario], other_prefect_api: str
) -> None:
    """Prefect finds its events worker by client type: a user's would carry the run's events to the user's server."""
    from prefect.events.clients import NullEventsClient
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    import tests.flows

    with temporary_settings({PREFECT_API_URL: other_prefect_api}):  # as the user's test server names it
        users = EventsWorker.instance(client_type=NullEventsClient)
    tests.flows.USERS_WORKER[:] = [users]
    outcome = harness_session.run(scenario_from("name: drained\nflow: tests.flows:sees_the_users_worker\n"))
    assert outcome.flow.name == "Completed", outcome.flow
    assert outcome.result is False
    assert users._stopped
    registry: Any = EventsWorker
    assert not registry._instances  # the session's own worker is set aside between runs
