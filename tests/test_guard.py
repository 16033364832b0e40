"""Fail closed: no connection outside httpx, no hung scenario, nothing left behind."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable

import prefect.task_engine as task_engine
import pytest

from harness import Scenario, ScenarioTimeout, Session, check


def scenario_of(scenario_from: Callable[[str], Scenario], flow: str, params: str = "{}") -> Scenario:
    return scenario_from(f"name: guarded\nflow: {flow}\nparameters: {params}\n")


@pytest.mark.parametrize(
    ("flow", "destination"),
    [
        ("tests.flows:urllib_flow", "a DNS lookup of weather.invalid (port 80)"),
        ("tests.flows:requests_flow", "a DNS lookup of api.invalid (port 443)"),
        ("tests.flows:socket_flow", "a DNS lookup of db.invalid (port 5432)"),
        ("tests.flows:loopback_socket_flow", "a connection to 127.0.0.1:9"),
    ],
)
def test_connections_outside_httpx_are_refused_and_named(
    harness_session: Session, scenario_from: Callable[[str], Scenario], flow: str, destination: str
) -> None:
    """urllib, requests and raw sockets are refused before leaving the process; the scenario fails naming where."""
    scenario = scenario_of(scenario_from, flow)
    outcome = harness_session.run(scenario)
    assert outcome.blocked == (destination,)
    (mismatch,) = [m for m in check(scenario, outcome) if m.field == "network"]
    assert destination in str(mismatch)


def test_guard_is_lifted_after_the_scenario(harness_session: Session, scenario_from: Callable[[str], Scenario]) -> None:
    """Outside a scenario the socket module is the standard library's own again."""
    before = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)
    harness_session.run(scenario_of(scenario_from, "tests.flows:urllib_flow"))
    assert (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo) == before


def test_hung_scenario_is_stopped_as_an_error_naming_it(
    scenario_from: Callable[[str], Scenario], harness_session: Session
) -> None:
    """A flow stuck in its own sleep ends at the wall-clock limit, without SIGALRM, and everything is undone."""
    scenario = scenario_from("name: stuck in user code\nflow: tests.flows:hanging_flow\n")
    limited = Session.__new__(Session)
    limited.__dict__.update(harness_session.__dict__)
    limited.time_limit = 0.5
    alarm_before = signal.getsignal(signal.SIGALRM)
    usr1_before = signal.getsignal(signal.SIGUSR1)
    cwd = os.getcwd()
    started = time.perf_counter()
    with pytest.raises(ScenarioTimeout, match=r"'stuck in user code' \(.*\) ran past its 0.5 s wall-clock limit"):
        limited.run(scenario)
    assert time.perf_counter() - started < 5
    assert signal.getsignal(signal.SIGALRM) == alarm_before
    assert signal.getsignal(signal.SIGUSR1) == usr1_before
    assert os.getcwd() == cwd
    assert task_engine.time is time


def test_base_exception_in_a_flow_undoes_every_patch(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A KeyboardInterrupt raised inside a task propagates, and the harness's patches are all undone."""
    import respx

    scenario = scenario_from("name: interrupted\nflow: tests.flows:interrupted_flow\n")
    cwd = os.getcwd()
    with pytest.raises(KeyboardInterrupt):
        harness_session.run(scenario)
    assert os.getcwd() == cwd
    assert task_engine.time is time
    assert socket.getaddrinfo.__module__ == "socket"
    assert not respx.mock.routes  # the global router is untouched
    # the next scenario runs normally
    ok = harness_session.run(scenario_from("name: after\nflow: tests.flows:file_writer\n"))
    assert ok.flow.name == "Completed"
