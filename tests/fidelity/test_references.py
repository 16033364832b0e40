"""How a session gets its reference results (``references.References``): one live run however many workers ask,
its failure or its owner's death said at once. A stand-in reference module writes its cases' results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fidelity.references import ReferenceFailed, References, staleness

STAND_IN = """
import json, sys
from pathlib import Path
with open(Path(__file__).with_name("runs.log"), "a") as log:
    log.write("ran\\n")
if "{fail}":
    print("the reference broke"); sys.exit(3)
Path(sys.argv[1]).write_text(json.dumps({{"a case": {{"flow": "Completed", "error": None}}}}))
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "modules"
    package.mkdir()
    (package / "good_reference.py").write_text(STAND_IN.format(fail=""))
    (package / "bad_reference.py").write_text(STAND_IN.format(fail="yes"))
    monkeypatch.setenv("PYTHONPATH", str(package))
    shared = tmp_path / "shared"
    shared.mkdir()
    return shared


def test_two_workers_share_one_live_run(stand_in: Path) -> None:
    one, two = References(stand_in, live=True), References(stand_in, live=True)
    one.start("good_reference")
    two.start("good_reference")  # claimed already: nothing started
    assert list(one.owned) == ["good_reference"] and not two.owned
    assert (
        two.results("good_reference")
        == one.results("good_reference")
        == {"a case": {"flow": "Completed", "error": None}}
    )
    one.close(interrupted=False)
    assert (stand_in.parent / "modules" / "runs.log").read_text() == "ran\n"


def test_a_reference_that_fails_is_reported_with_its_output(stand_in: Path) -> None:
    refs = References(stand_in, live=True)
    with pytest.raises(ReferenceFailed, match=r"bad_reference exited with code 3:\nthe reference broke"):
        refs.results("bad_reference")
    refs.close(interrupted=False)


def test_a_worker_waiting_on_a_run_whose_owner_died_fails_at_once(stand_in: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (stand_in / "good_reference.claim").write_text(gone.stdout.strip())
    refs = References(stand_in, live=True)
    with pytest.raises(ReferenceFailed, match=rf"the worker running it \(pid {gone.stdout.strip()}\) exited"):
        refs.results("good_reference")
    assert not refs.owned and os.path.exists(stand_in / "good_reference.claim")


def test_a_current_recording_is_used_without_running_anything(tmp_path: Path) -> None:
    why = staleness("tests.fidelity.function_reference")
    if why is not None:
        pytest.skip(f"no current recording here: {why}")
    refs = References(tmp_path, live=False)
    results = refs.results("tests.fidelity.function_reference")
    assert not refs.owned and not list(tmp_path.iterdir())
    assert json.loads(json.dumps(results)) == results and len(results) >= 5
