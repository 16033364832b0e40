"""Fault search: minimal schedules found on the real engine, written as scenarios that xfail until fixed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from harness import Scenario, ScenarioTimeout, Session, load_file
from harness.cli import main
from harness.explore import Exploration, describe, dump, explore, parse_invariant, write
from harness.run import session as session_module
from harness.scenario.model import Invariant

ROOT = Path(__file__).parent.parent

STARS = """
name: stars of two repositories
flow: github_stars
parameters: {repos: [octo/cat, octo/dog]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 500}, {json: {stargazers_count: 7}}]
  - request: GET https://api.github.com/repos/octo/dog
    responses: [{json: {stargazers_count: 9}}]
expect:
  flow: Completed
"""

CFPB = """
name: cfpb etl stores what it is served
flow: cfpb_etl
parameters: {size: 2}
endpoints:
  - request: GET https://www.consumerfinance.gov/data-research/consumer-complaints/search/api/v1/?size=2
    responses:
      - json:
          hits:
            total: {value: 2, relation: eq}
            hits:
              - _source: {date_received: "2021-12-11", state: TN, product: Debt collection, company: A}
              - _source: {date_received: "2021-12-05", state: AL, product: Credit reporting, company: B}
"""

QUOTES = """
name: quotes of two symbols
flow: scenarios.example_flows.quotes:quote_report
parameters: {symbols: [ACME, INITECH]}
endpoints:
  - request: GET https://quotes.example.test/v1/quotes/ACME
    responses: [{json: {price: 12.5}}]
  - request: GET https://quotes.example.test/v1/quotes/INITECH
    responses: [{json: {price: 3.25}}]
"""


def _load(folder: Path, name: str, text: str) -> Scenario:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    (scenario,) = load_file(path)
    assert isinstance(scenario, Scenario)
    return scenario


@pytest.fixture(scope="module")
def sources(harness_session: Session, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    """The three source scenarios, loaded once the session has set Prefect's settings (loading imports flows)."""
    folder = tmp_path_factory.mktemp("sources")
    return {name: _load(folder, name, text) for name, text in (("stars", STARS), ("cfpb", CFPB), ("quotes", QUOTES))}


@pytest.fixture(scope="module")
def found(harness_session: Session, sources: dict[str, Scenario]) -> dict[str, Exploration]:
    """One search per case, shared by the tests below."""
    return {
        "stars": explore(harness_session, sources["stars"], parse_invariant("completes"), budget=100),
        "cfpb": explore(harness_session, sources["cfpb"], parse_invariant("no_data_loss"), budget=100),
        "quotes": explore(harness_session, sources["quotes"], parse_invariant("completes"), budget=100),
    }


def _steps(exploration: Exploration) -> list[list[dict[str, object]]]:
    assert exploration.finding is not None
    return [list(faults) for faults in exploration.finding.schedule]


def test_github_stars_shrinks_to_four_faults_on_one_repository(found: dict[str, Exploration]) -> None:
    """get_stars has retries=3: the smallest breaking schedule is four transient faults on one repository."""
    e = found["stars"]
    assert sorted(_steps(e), key=len) == [[], [{"fault": "connect_timeout"}] * 4]
    assert e.finding is not None and e.finding.violation == "the flow ended Failed"
    assert e.finding.outcome.tasks[-1].retries == 3
    assert 1 <= e.tried <= e.budget and e.runs <= e.tried and e.rate > 0


def test_cfpb_etl_shrinks_to_a_single_fault(found: dict[str, Exploration]) -> None:
    """The ETL has no retries: one fault loses every row a fault-free run stores."""
    e = found["cfpb"]
    assert _steps(e) == [[{"fault": "connect_timeout"}]]
    assert e.finding is not None
    assert e.finding.violation == "2 of the 2 row(s) a fault-free run stores are missing"


def test_a_retry_condition_that_skips_4xx_shrinks_to_one_4xx(found: dict[str, Exploration]) -> None:
    """Retrying only 5xx and timeouts: a single 400 fails the flow with three retries left."""
    e = found["quotes"]
    assert sorted(_steps(e), key=len) == [[], [{"status": 400}]]
    assert e.finding is not None and e.finding.outcome.tasks[-1].retries == 0


def test_the_same_seed_finds_the_same_schedule(
    harness_session: Session, sources: dict[str, Scenario], found: dict[str, Exploration]
) -> None:
    """No example database and a fixed seed: the search and its shrinking repeat exactly."""
    again = explore(harness_session, sources["stars"], parse_invariant("completes"), budget=100)
    assert again.finding is not None and found["stars"].finding is not None
    assert again.finding.document == found["stars"].finding.document
    assert (again.tried, again.shrink_runs) == (found["stars"].tried, found["stars"].shrink_runs)


def test_a_budget_that_finds_nothing_tries_every_schedule(
    harness_session: Session, sources: dict[str, Scenario]
) -> None:
    """get_stars never calls a repository more than four times: the whole budget runs, nothing is written."""
    e = explore(harness_session, sources["stars"], parse_invariant("bounded_calls:4"), budget=8)
    assert e.finding is None and e.tried == 8 and e.shrink_runs == 0


def test_shrinking_stops_at_its_cap(harness_session: Session, sources: dict[str, Scenario]) -> None:
    """With no shrinking runs allowed, the first breaking schedule is kept, and the report says so."""
    e = explore(harness_session, sources["quotes"], parse_invariant("completes"), budget=100, shrink_runs=0)
    assert e.finding is not None and (e.shrink_runs, e.shrink_capped) == (0, True)
    assert describe(e)[1].endswith("(stopped at its cap: small, perhaps not minimal)")


def test_scenarios_that_cannot_be_searched_are_refused(harness_session: Session, sources: dict[str, Scenario]) -> None:
    """A data invariant needs rows to compare; an invariant broken without faults leaves nothing to search."""
    with pytest.raises(ValueError, match=r"no_data_loss compares the rows stored .* give .*`expect.sqlite`"):
        explore(harness_session, sources["quotes"], Invariant(kind="no_data_loss"))
    with pytest.raises(ValueError, match=r"breaks bounded_calls: 0 without any fault \(GET .*/octo/cat took 1 calls"):
        explore(harness_session, sources["stars"], parse_invariant("bounded_calls:0"))


def test_a_run_that_cannot_finish_stops_the_search(harness_session: Session, sources: dict[str, Scenario]) -> None:
    """A run stopped at its wall-clock limit ends the search at once, naming its schedule; nothing shrinks to it."""
    runs: list[Scenario] = []

    class Hangs:
        def run(self, scenario: Scenario, **options: object) -> object:
            runs.append(scenario)
            if any(len(e.responses) > 1 for e in scenario.endpoints):
                raise ScenarioTimeout("scenario ran past its 60 s wall-clock limit and was stopped")
            return harness_session.run(scenario)

    with pytest.raises(ScenarioTimeout) as excinfo:
        explore(Hangs(), sources["cfpb"], parse_invariant("completes"))  # type: ignore[arg-type]
    assert len(runs) == 2
    (note,) = excinfo.value.__notes__
    assert note.startswith("while running the schedule (({")


@pytest.mark.parametrize(
    ("text", "invariant"),
    [
        ("completes", Invariant(kind="completes")),
        ("no_duplicates", Invariant(kind="no_duplicates")),
        ("bounded_calls:3", Invariant(kind="bounded_calls", bound=3)),
        ("checks.rows:no_gaps", Invariant(kind="checks.rows:no_gaps")),
    ],
    ids=["builtin", "data", "bounded", "module-function"],
)
def test_invariants_are_named_as_on_the_command_line(text: str, invariant: Invariant) -> None:
    """``--invariant`` takes a built-in name, ``bounded_calls:N`` or ``module:function``."""
    assert parse_invariant(text) == invariant


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("complete", "unknown invariant 'complete'; did you mean 'completes'?"),
        ("bounded_calls:x", "bounded_calls needs a whole number of calls, e.g. bounded_calls:4; got 'bounded_calls:x'"),
    ],
    ids=["misspelt", "bound-not-a-number"],
)
def test_invalid_invariants_are_refused(text: str, message: str) -> None:
    """``--invariant`` is checked as the scenario language checks ``invariants``."""
    with pytest.raises(ValueError) as excinfo:
        parse_invariant(text)
    assert str(excinfo.value) == message


def test_written_scenarios_xfail_and_fail_for_the_same_reason_without_xfail(
    found: dict[str, Exploration], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committed, each written scenario is XFAIL; with ``xfail`` removed it fails naming the broken invariant."""
    written = [write(e, pytester.path / "found") for e in found.values()]
    unmarked = [pytester.path / "unmarked" / path.name for path in written]
    for path, e in zip(written, found.values(), strict=True):
        (scenario,) = load_file(path)
        assert isinstance(scenario, Scenario)
        assert [x.request.text for x in scenario.endpoints] == [x.request.text for x in e.source.endpoints]
        assert scenario.xfail is not None and scenario.expect.invariants == (e.invariant,)
        document = yaml.safe_load(path.read_text())
        del document["xfail"]
        document["name"] += " (xfail removed)"
        (pytester.path / "unmarked").mkdir(exist_ok=True)
        (pytester.path / "unmarked" / path.name).write_text(dump(document))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    files = [str(p.relative_to(pytester.path)) for p in written + unmarked]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *files)
    result.assert_outcomes(xfailed=3, failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "XFAIL found/stars-of-two-repositories--completes.yaml::* - completes: the flow ended Failed",
            "XFAIL found/quotes-of-two-symbols--completes.yaml::* - completes: the flow ended Failed",
            "XFAIL found/cfpb-etl-stores-what-it-is-served--no-data-loss.yaml::*"
            " - no_data_loss: 2 of the 2 row(s) a fault-free run stores are missing",
            "*unmarked/stars-of-two-repositories--completes.yaml:*: expect.invariants[[]0[]]:"
            " expected completes, observed the flow ended Failed",
            "*unmarked/cfpb-etl-stores-what-it-is-served--no-data-loss.yaml:*: expect.invariants[[]0[]]:"
            " expected no_data_loss, observed 2 of the 2 row(s) a fault-free run stores are missing",
        ]
    )


class _Shared:
    """The test session's ``Session`` for the CLI, which would otherwise start a server of its own."""

    def __init__(self, session: Session) -> None:
        self.run = session.run

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_cli_prints_the_schedule_and_speed_and_writes_a_valid_scenario(
    harness_session: Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``harness explore`` exits 1 on a finding, prints it with its counts, and the file it writes validates."""
    monkeypatch.setattr(session_module, "Session", lambda **_: _Shared(harness_session))
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "CRITICAL")
    monkeypatch.chdir(tmp_path)
    Path("cfpb.yaml").write_text(CFPB)
    assert main(["explore", "cfpb.yaml", "--invariant", "completes", "--budget", "20", "--out", "found"]) == 1
    out = pytest.LineMatcher(capsys.readouterr().out.splitlines())
    out.fnmatch_lines(
        [
            "exploring 'cfpb etl stores what it is served' for completes",
            "searched * schedule(s) in * s (* schedules/s, * flow runs; budget 20, seed 0)",
            "shrunk in * run(s), * s",
            "completes broken: the flow ended Failed",
            "minimal schedule, before each endpoint's healthy answer:",
            "  GET https://www.consumerfinance.gov/*?size=2: {fault: connect_timeout}",
            "wrote found/cfpb-etl-stores-what-it-is-served--completes.yaml: *",
        ]
    )
    assert main(["validate", "found"]) == 0
    assert capsys.readouterr().out == "1 scenario(s) valid, 0 invalid\n"
    assert main(["explore", "cfpb.yaml", "--invariant", "complete", "--out", "found"]) == 2
    assert capsys.readouterr().err == (
        "harness explore: --invariant: unknown invariant 'complete'; did you mean 'completes'?\n"
    )


def test_function_targets_are_searched_too_and_written_before_calling_through(
    harness_session: Session, tmp_path: Path
) -> None:
    """A store with no retries: one failed commit loses every row; the search finds it on the commit alone."""
    source = _load(
        tmp_path,
        "rows",
        "name: rows stored\nflow: tests.flows:rows_stored\n"
        "functions:\n  - call: sqlite3:commit\n    where: {path: '*.db'}\n    responses: [{pass: true}]\n"
        "expect:\n  sqlite: {path: rows.db, query: 'SELECT COUNT(*) FROM t', equals: 3}\n",
    )
    e = explore(harness_session, source, parse_invariant("no_data_loss"), budget=30)
    assert _steps(e) == [[{"raise": "sqlite_busy"}]]
    assert e.finding is not None and e.finding.violation == "3 of the 3 row(s) a fault-free run stores are missing"
    assert e.finding.document["functions"] == [
        {"call": "sqlite3:commit", "where": {"path": "*.db"}, "responses": [{"raise": "sqlite_busy"}, {"pass": True}]}
    ]
    assert "  sqlite3:commit: {raise: sqlite_busy}" in describe(e)
    written = write(e, tmp_path / "found")
    (scenario,) = load_file(written)
    assert isinstance(scenario, Scenario) and scenario.xfail


def test_cli_writes_to_reports_found_by_default_and_says_when_a_folder_is_collected(
    harness_session: Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(session_module, "Session", lambda **_: _Shared(harness_session))
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "CRITICAL")
    monkeypatch.chdir(tmp_path)
    Path("cfpb.yaml").write_text(CFPB)
    assert main(["explore", "cfpb.yaml", "--invariant", "completes", "--budget", "20"]) == 1
    out = capsys.readouterr().out
    assert "wrote reports/found/cfpb-etl-stores-what-it-is-served--completes.yaml" in out
    assert "note:" not in out
    assert main(["explore", "cfpb.yaml", "--invariant", "completes", "--budget", "20", "--out", "scenarios/found"]) == 1
    assert "note: scenarios/found is under scenarios/: the next `harness run` and `pytest` run it too" in (
        capsys.readouterr().out
    )
