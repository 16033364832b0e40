"""Fixtures for the harness's own tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Scenario, ScenarioError, load_file
from tests.fidelity.references import REFERENCES as REFERENCES_OF
from tests.fidelity.references import References, staleness


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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reference",
        choices=("recorded", "live"),
        default="recorded",
        help="the oracle's reference results: recorded for the installed Prefect when current (default), "
        "else run live; 'live' always runs plain Prefect (tests/fidelity/references.py)",
    )


REFERENCES = pytest.StashKey[References]()


@pytest.fixture(scope="session", autouse=True)
def references(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[References]:
    """The oracle's references, the live ones started as soon as the session's first test sets up.

    The folder is shared by every pytest-xdist worker of the run (the parent of a worker's base folder), so
    that each live reference runs once."""
    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):
        shared = shared.parent
    refs = References(shared, live=request.config.getoption("reference") == "live")
    request.config.stash[REFERENCES] = refs
    needed = {getattr(item, "module", None) for item in request.session.items}
    for module in sorted(m.__name__ for m in needed if m is not None and m.__name__ in REFERENCES_OF):
        refs.start(REFERENCES_OF[module])
    yield refs
    refs.close(interrupted=False)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A session interrupted, or stopped at its first failures (``-x``), stops the live references it started;
    otherwise they are waited for at teardown (another worker may still need them)."""
    refs = session.config.stash.get(REFERENCES, None)
    if refs is not None and (exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldfail):
        refs.close(interrupted=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Where the oracle's references come from in this session, and why a recording is not used."""
    if config.getoption("reference") == "live":
        return ["oracle references: live (--reference=live)"]
    stale = {ref: why for ref in REFERENCES_OF.values() if (why := staleness(ref)) is not None}
    if not stale:
        return ["oracle references: recorded (tests/fidelity/recorded)"]
    return [f"oracle references: {ref} runs live: {why}" for ref, why in stale.items()]
