"""Fixtures for the harness's own tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Scenario, ScenarioError, load_file


@pytest.fixture
def scenario_from(tmp_path: Path) -> Callable[[str], Scenario]:
    """Write one YAML scenario document to a file and load it."""

    def load(text: str) -> Scenario:
        path = tmp_path / "scenario.yaml"
        path.write_text(text)
        (doc,) = load_file(path)
        if isinstance(doc, ScenarioError):
            raise doc
        return doc

    return load


# A user's project with its own test suite, run by tests/test_neighbour.py in a folder of its own: its
# tests are not the harness's.
collect_ignore = ["neighbour"]
