"""A cheaper flow run: what each cut of a run's cost relies on, pinned.

The result folder: a copy of Prefect's settings costs about 20 ms of CPU, as much as the rest of a run in the
harness's process, so the session sets its result folder once and empties it after every run; each run still
starts with no cache record of another (the isolation tests/test_isolation.py pins), and copies no settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Scenario, Session, check

COUNT = "https://api.example.test/count"

CACHED = f"""
name: cached, healthy
flow: tests.flows:cached_flow
endpoints:
  - request: GET {COUNT}
    responses: [{{json: {{count: 3}}}}]
expect:
  flow: Completed
  result: 3
  calls: {{GET {COUNT}: 1}}
"""


def test_a_run_copies_no_settings_and_starts_with_an_empty_result_folder(
    harness_session: Session, scenario_from: Callable[[str], Scenario], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Result folder set once per session (a settings copy costs ~40 ms) and emptied after each run: isolated."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH
    from prefect.settings.models.root import Settings

    import harness.run.session

    folders: list[Path] = []
    real = harness.run.session.own_results

    @contextlib.contextmanager
    def seen() -> Iterator[Path]:
        with real() as folder:
            assert Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()) == folder  # what the flow's tasks write to
            folders.append(folder)
            yield folder

    monkeypatch.setattr(harness.run.session, "own_results", seen)
    scenario = scenario_from(CACHED)
    assert check(scenario, harness_session.run(scenario)) == []
    folder = folders[0]
    assert folder.name.startswith("harness-results-")
    copies: list[Any] = []
    original = Settings.copy_with_update

    def counted(self: Settings, *args: Any, **kwargs: Any) -> Settings:
        copies.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Settings, "copy_with_update", counted)
    for _ in range(2):  # the second run is served no cache record of the first: it calls the endpoint again
        assert check(scenario, harness_session.run(scenario)) == []
        assert folder.is_dir() and list(folder.iterdir()) == []
    assert copies == []
    assert folders == [folder] * 3
    assert PREFECT_RESULTS_LOCAL_STORAGE_PATH.value() != folder  # between runs, the setting is the process's own
