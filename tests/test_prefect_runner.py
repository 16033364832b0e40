"""What Prefect's runner (``flow.serve()``, workers) does with a served flow run cancelled through the API.

Pinned on plain Prefect by ``tests.runner_reference``, as the README
("Cancellation") states it: this is what ``cancel: {how: runner}`` is to
agree with, and how it differs from ``api_only`` (``tests/test_prefect_api.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("runner-reference")
    out = folder / "out.json"
    env = {**os.environ, "RUNNER_REFERENCE_MARKS": str(folder)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.runner_reference", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", ["in_task", "between_tasks"])
def test_the_runner_kills_the_flows_process_and_the_server_records_cancelled(served: dict, case: str) -> None:
    run = served[case]
    assert run["flow"] == "Cancelled"
    assert run["message"] == "Flow run was cancelled successfully."
    assert run["history"] == ["Scheduled", "Pending", "Submitting", "Running", "Cancelling", "Cancelled"]
    assert run["stored"] is False  # nothing after the point ran: the process was ended there
    assert "store" not in run["tasks"]


def test_a_task_run_the_signal_interrupts_is_crashed(served: dict) -> None:
    assert served["in_task"]["tasks"] == {"fetch": ["Crashed", "Execution was aborted by a termination signal."]}
    assert served["between_tasks"]["tasks"] == {"fetch": ["Completed", ""]}


@pytest.mark.parametrize("case", ["in_task", "between_tasks"])
def test_on_cancellation_runs_once_in_the_runners_process_not_the_flows(served: dict, case: str) -> None:
    hooks = served[case]["hooks"]
    assert [(h["process"], h["state"]) for h in hooks] == [("runner", "Cancelling")]
