"""The user's flow tests, against the session's Prefect test server: states, task runs and logs read back."""

from __future__ import annotations

import time
from typing import Any

import httpx
import respx
from myflows.stars import doubled, stars
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.events.worker import EventsWorker
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL


def _eventually(read: Any, done: Any, seconds: float = 20.0) -> Any:
    """The server records task runs and logs a moment after the client sends them: read until they are there."""
    deadline = time.monotonic() + seconds
    while True:
        found = read()
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_my_flows_talk_to_my_test_server() -> None:
    """PREFECT_API_URL is the session's own prefect_test_harness server."""
    assert PREFECT_API_URL.value() == SubprocessASGIServer._instances[None].api_url


def test_task_runs_and_logs_reach_my_test_server() -> None:
    """The server records the flow's task runs (its task-run recorder on) and its logs (logging to the API on)."""
    state = doubled([1, 2, 3], return_state=True)
    assert state.result() == [2, 4, 6]
    run_id = state.state_details.flow_run_id
    EventsWorker.drain_all()  # the task runs' states travel as events: sent now
    with get_client(sync_client=True) as client:
        runs = _eventually(
            lambda: client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))),
            lambda found: len(found) == 3 and all(r.state_name == "Completed" for r in found),
        )
        assert sorted((r.state_name, r.run_count) for r in runs) == [("Completed", 1)] * 3
        logs = _eventually(
            lambda: client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))),
            lambda found: any("doubling [1, 2, 3]" in log.message for log in found),
        )
        assert any("doubling [1, 2, 3]" in log.message for log in logs)


@respx.mock
def test_my_flow_with_the_respx_decorator() -> None:
    """respx's decorator mocks GitHub; Prefect's own API traffic passes through to the test server."""
    respx.route(host="127.0.0.1").pass_through()
    route = respx.get("https://api.github.com/repos/octo/cat").mock(
        side_effect=[httpx.Response(500), httpx.Response(200, json={"stargazers_count": 3})]
    )
    assert stars(["octo/cat"]) == [3]
    assert route.call_count == 2


def test_my_flow_with_the_respx_fixture(respx_mock: respx.MockRouter) -> None:
    """respx's fixture: a 404 fails the flow after the task's two retries."""
    respx_mock.route(host="127.0.0.1").pass_through()
    route = respx_mock.get("https://api.github.com/repos/octo/gone").mock(return_value=httpx.Response(404))
    state = stars(["octo/gone"], return_state=True)
    assert state.is_failed()
    assert route.call_count == 3
