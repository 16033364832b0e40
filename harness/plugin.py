"""The pytest plugin: each scenario document under the scenario paths is one test item.

Registered once, through the ``pytest11`` entry point. It collects only YAML
files under ``harness_scenarios`` (default ``scenarios/``) or named on the
command line, imports Prefect only when a scenario runs, and starts the
session's Prefect test server as soon as collection has found a scenario.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported late at run time: loading the plugin imports nothing of the harness's engine
    from harness.scenario.model import Scenario
    from harness.scenario.strategy import Policy

import pytest

SESSION = pytest.StashKey["Any"]()
NAMES = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "Prefect fault-injection scenarios")
    group.addoption("--real-time", action="store_true", help="sleep retry delays and latency for real")
    group.addoption(
        "--harness-transport",
        choices=("respx", "wire"),
        default="respx",
        help="httpx's transport where a scenario names none (default respx; other clients always use the wire)",
    )
    group.addoption(
        "--scenario-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wall-clock limit of one scenario; a hung scenario ends as an error (default 60, 0 for none)",
    )
    group.addoption(
        "--scenario",
        action="append",
        metavar="NAME",
        help="run only the scenarios (and parametrized test cases) of this name: exact, a strategy variant's "
        "'NAME[strategy]', or a glob; repeatable. Names with spaces need no escaping, unlike -k",
    )
    parser.addini("harness_scenarios", "folders whose YAML files are scenarios", type="paths", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario: a YAML scenario item collected by the harness")
    if _will_run_scenarios(config):
        _session(config)  # the server boots while pytest collects


def _will_run_scenarios(config: pytest.Config) -> bool:
    """A cheap look before collection: is there a scenario file this process will run?"""
    if config.option.collectonly or (
        getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
    ):
        return False  # collection only, or an xdist controller: its workers run the scenarios
    args = [Path(a.split("::")[0]) for a in config.args]
    roots = _roots(config)
    for arg in args or [config.rootpath]:
        arg = arg.resolve()
        if arg.is_file():
            if arg.suffix in (".yaml", ".yml"):
                return True
            continue
        for root in roots:
            root = root.resolve()
            if root.is_relative_to(arg) or arg.is_relative_to(root):
                base = arg if arg.is_relative_to(root) else root
                if base.is_dir() and next(base.rglob("*.y*ml"), None) is not None:
                    return True
    return False


def _roots(config: pytest.Config) -> list[Path]:
    configured = config.getini("harness_scenarios")
    return [Path(p) for p in configured] if configured else [config.rootpath / "scenarios"]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    config = parent.config
    explicit = any(Path(a.split("::")[0]).resolve() == file_path for a in config.args)
    if explicit or any(file_path.is_relative_to(root.resolve()) for root in _roots(config)):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """A scenario file: one item per YAML document."""

    def collect(self) -> Iterator[pytest.Item]:
        from harness._errors import ScenarioError
        from harness.scenario.loader import load_file

        try:
            documents = load_file(self.path)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        names = self.config.stash.setdefault(NAMES, {})
        for i, doc in enumerate(documents):
            if isinstance(doc, ScenarioError):
                problem = doc.first
                yield InvalidScenarioItem.from_parent(self, name=f"document {i + 1} (line {problem.line})", error=doc)
                continue
            where = f"{doc.path}:{doc.line}"
            if names.setdefault(doc.name, where) != where:
                err = ScenarioError([_duplicate(doc, names[doc.name])])
                yield InvalidScenarioItem.from_parent(self, name=f"{doc.name} (duplicate)", error=err)
                continue
            for label, scenario, policy in doc.cases():
                item = ScenarioItem.from_parent(self, name=label, scenario=scenario, policy=policy)
                reason = doc.skipped()
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=reason))
                if doc.xfail is not None:
                    from harness._errors import ScenarioFailure

                    item.add_marker(pytest.mark.xfail(reason=doc.xfail, strict=True, raises=ScenarioFailure))
                yield item


def _duplicate(doc: Any, first: str) -> Any:
    from harness._errors import Problem

    return Problem(doc.path, doc.line_of("name"), "name", f"duplicate scenario name {doc.name!r} (first at {first})")


class ScenarioItem(pytest.Item):
    """One scenario: run its flow under faults and check its expectations."""

    def __init__(self, *, scenario: Scenario, policy: Policy | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.policy = policy
        self.add_marker(pytest.mark.scenario)

    def runtest(self) -> None:
        from harness.checking.expectations import failure
        from harness.checking.verdict import run_scenario

        result = run_scenario(_session(self.config), self.scenario, self.policy)
        outcome = result.outcome
        assert outcome is not None  # run_scenario either ran the flow or raised
        self.user_properties += [
            ("flow_state", outcome.flow.name),
            ("calls", dict(outcome.counts)),
            ("virtual_s", round(outcome.virtual_s, 3)),
        ]
        if result.mismatches:
            raise failure(self.scenario, outcome, list(result.mismatches), self.policy)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        from harness._errors import HarnessError

        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.scenario.line - 1, f"scenario: {self.name}"


class InvalidScenarioItem(pytest.Item):
    """A scenario document that did not validate: it fails with the problem, file and line."""

    def __init__(self, *, error: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise self.error

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, (self.error.first.line or 1) - 1, f"invalid scenario: {self.name}"


def _session(config: pytest.Config) -> Any:
    session = config.stash.get(SESSION, None)
    if session is None:
        from harness.run.session import Session

        session = config.stash[SESSION] = Session(
            real_time=config.getoption("real_time"),
            time_limit=config.getoption("scenario_timeout") or None,
            transport=config.getoption("harness_transport"),
        )
        session.start()
    return session


@pytest.fixture(scope="session")
def harness_session(request: pytest.FixtureRequest) -> Any:
    """The session's ``harness.Session``: one Prefect test server shared with the scenario items."""
    return _session(request.config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--scenario NAME``: only the items of that name are kept, the others deselected."""
    patterns = config.getoption("scenario")
    if not patterns:
        return
    import fnmatch

    def names(item: pytest.Item) -> list[str]:
        if isinstance(item, ScenarioItem):
            return [item.name, item.scenario.name] if item.policy is not None else [item.name]
        callspec = getattr(item, "callspec", None)
        return [item.name] + ([callspec.id] if callspec is not None else [])

    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        own = names(item)
        chosen = any(p in own or any(fnmatch.fnmatchcase(n, p) for n in own) for p in patterns)
        (kept if chosen else dropped).append(item)
    if not kept:
        raise pytest.UsageError(f"--scenario {', '.join(map(repr, patterns))} selects no item")
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(isinstance(item, ScenarioItem) for item in session.items):
        _session(session.config)  # the server starts now and is ready by the first scenario


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION, None)
    if session is not None:
        session.close()
