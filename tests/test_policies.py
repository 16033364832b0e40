"""Fault-tolerance strategies: real Prefect task options, set for one run and restored, judged by what was served."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from harness import HarnessError, Scenario, ScenarioError, Session, check
from harness import policies as policies_module
from harness.flows.cfpb import cfpb_etl, get_complaint_data, parse_complaint_data, store_complaints
from harness.flows.github import get_stars, github_stars
from harness.policies import (
    PRESETS,
    CallLog,
    Policy,
    applied,
    load_policies,
    resolve,
    retry_after_seconds,
    retry_on_transient,
    retry_on_transient_honouring_retry_after,
)

REPO = "https://api.github.com/repos/octo/cat"
NOT_FOUND = "{status: 404, json: {message: Not Found}}"


def stars(responses: str, extra: str = "") -> str:
    """A github_stars scenario for one repository served ``responses``."""
    return f"""
name: stars
flow: github_stars
parameters: {{repos: [octo/cat]}}
endpoints:
  - request: GET {REPO}
    responses: {responses}
{extra}"""


def log() -> CallLog:
    return CallLog([], lambda s: None, lambda: 0.0)


def never_retry(task: Any, task_run: Any, state: Any) -> bool:
    """A user's own retry condition, named by import path in a strategy."""
    return False


# -- presets and the @task(...) they print -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("as_written", "the flow's own options"),
        ("no_retries", "@task(retries=0)"),
        ("transient", "@task(retries=3, retry_delay_seconds=1, retry_condition_fn=retry_on_transient)"),
        ("temporal", "@task(retries=9, retry_delay_seconds=[1, 2, 4, 8, 16, 32, 64, 100, 100])"),
        ("dagster", "@task(retries=1, retry_delay_seconds=0)"),
        ("airflow", "@task(retries=0, retry_delay_seconds=300)"),
        ("polly", "@task(retries=3, retry_delay_seconds=2)"),
    ],
)
def test_presets_are_real_prefect_options(name: str, options: str) -> None:
    """Each preset prints the @task(...) that reproduces it, and Prefect accepts those options."""
    policy = PRESETS[name]
    assert policy.task_options() == options
    get_stars.with_options(**policy.options_for(get_stars))  # Prefect's own validation


def test_framework_presets_name_their_source_and_temporal_is_bounded() -> None:
    """Presets mirroring other tools say where their defaults come from; Temporal's unlimited attempts stop at 10."""
    for name in ("temporal", "dagster", "airflow", "polly"):
        assert PRESETS[name].source, name
    assert "temporal.io" in PRESETS["temporal"].source and PRESETS["temporal"].retries == 9
    assert "bounded" in PRESETS["temporal"].description


def test_exponential_with_cap_produces_the_delay_list() -> None:
    """{exponential: {base, factor, cap}} becomes Prefect's list of delays, one per retry, each capped."""
    policy = Policy.model_validate(
        {"name": "p", "retries": 6, "retry_delay_seconds": {"exponential": {"base": 1, "factor": 3, "cap": 20}}}
    )
    assert policy.options_for(get_stars)["retry_delay_seconds"] == [1, 3, 9, 20, 20, 20]
    assert policy.task_options() == "@task(retries=6, retry_delay_seconds=[1, 3, 9, 20, 20, 20])"


def test_delays_constant_list_jitter_and_timeout_print_as_written() -> None:
    """Constant and listed delays, jitter, a timeout and flow retries appear as Prefect spells them."""
    policy = Policy(
        name="p",
        tasks="get_*",
        retries=2,
        retry_delay_seconds=[1, 5],
        retry_jitter_factor=0.5,
        timeout_seconds=30,
        flow_retries=1,
        flow_retry_delay_seconds=60,
    )
    assert policy.task_options() == (
        "@task(retries=2, retry_delay_seconds=[1, 5], retry_jitter_factor=0.5, timeout_seconds=30) "
        "on tasks 'get_*' @flow(retries=1, retry_delay_seconds=60)"
    )


# -- applying: only for the run, restored afterwards -----------------------------------------


def test_applying_changes_options_only_for_the_run_and_restores_them() -> None:
    """Inside ``applied`` the flow's own task carries the strategy's options; after it, its own again."""
    before = {k: getattr(get_stars, k) for k in policies_module.TASK_OPTIONS}
    with applied(PRESETS["transient"], github_stars, log()) as flow:
        assert flow is github_stars
        assert (get_stars.retries, get_stars.retry_delay_seconds) == (3, 1)
        assert get_stars.retry_condition_fn.__name__ == "retry_on_transient"
    assert {k: getattr(get_stars, k) for k in policies_module.TASK_OPTIONS} == before


def test_options_are_restored_when_the_flow_raises() -> None:
    """An exception inside the run (the flow's own, or an interrupt) still restores the task's options."""
    with pytest.raises(KeyboardInterrupt), applied(PRESETS["no_retries"], github_stars, log()):
        assert get_stars.retries == 0
        raise KeyboardInterrupt
    assert get_stars.retries == 3


def test_a_failed_run_under_a_strategy_leaves_the_flow_as_written(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A real run whose flow fails under ``no_retries``: afterwards get_stars has its retries=3 again."""
    outcome = harness_session.run(scenario_from(stars(f"[{NOT_FOUND}]")), policy=PRESETS["no_retries"])
    assert outcome.flow.name == "Failed"
    assert outcome.counts == {f"GET {REPO}": 1}
    assert (get_stars.retries, get_stars.retry_condition_fn) == (3, None)


def test_tasks_glob_selects_tasks_by_name() -> None:
    """``tasks: "get_*"`` changes get_complaint_data and leaves the ETL's other tasks alone."""
    policy = Policy(name="p", tasks="get_*", retries=2)
    with applied(policy, cfpb_etl, log()):
        assert get_complaint_data.retries == 2
        assert parse_complaint_data.retries == 0 and store_complaints.retries == 0
    assert get_complaint_data.retries == 0


def test_tasks_glob_that_matches_nothing_names_the_flows_tasks() -> None:
    """A misspelt glob is an error naming the tasks there are, not a strategy that silently does nothing."""
    with (
        pytest.raises(
            HarnessError,
            match=r"tasks 'fetch_\*' matches no task of flow 'my etl flow' \(its tasks: "
            r"get_complaint_data, parse_complaint_data, store_complaints\)",
        ),
        applied(Policy(name="p", tasks="fetch_*", retries=2), cfpb_etl, log()),
    ):
        pass


# -- retry conditions ---------------------------------------------------------------------------


def test_transient_spends_one_call_on_a_404_and_four_on_500s(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The seed flow turns both into KeyError; ``transient`` judges by the answer: a 404 is final, a 500 is not."""
    transient = PRESETS["transient"]
    gone = harness_session.run(scenario_from(stars(f"[{NOT_FOUND}]")), policy=transient)
    down = harness_session.run(scenario_from(stars("[{status: 500}]")), policy=transient)
    assert (gone.flow.name, gone.counts[f"GET {REPO}"], gone.tasks[0].retries) == ("Failed", 1, 0)
    assert (down.flow.name, down.counts[f"GET {REPO}"], down.tasks[0].retries) == ("Failed", 4, 3)


def test_user_retry_condition_by_import_path(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """``retry_condition: module:function`` is Prefect's retry_condition_fn, imported by path."""
    policy = Policy(name="mine", retry_condition="tests.test_policies:never_retry")
    outcome = harness_session.run(scenario_from(stars("[{status: 500}]")), policy=policy)
    assert outcome.counts[f"GET {REPO}"] == 1
    assert policy.task_options() == "@task(retry_condition_fn=never_retry)"


def test_honour_retry_after_waits_on_the_virtual_clock(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Two 429s asking for 600 s each: 1202 s of virtual time (waits plus 1 s delays), well under a second of wall."""
    limited = "{status: 429, times: 2, headers: {retry-after: '600'}, json: {message: slow down}}"
    s = scenario_from(stars(f"[{limited}, {{json: {{stargazers_count: 7}}}}]"))
    outcome = harness_session.run(s, policy=PRESETS["transient_retry_after"])
    assert outcome.flow.name == "Completed" and outcome.result == [7]
    assert outcome.waited_s == pytest.approx(1202, abs=0.01)
    assert outcome.wall_s < 5
    as_written = harness_session.run(s)
    assert as_written.waited_s == 0 and as_written.counts[f"GET {REPO}"] == 3


def test_x_ratelimit_reset_is_honoured_from_the_answers_date(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A primary rate limit (403, remaining 0) resetting 90 s after the answer's Date is waited out for 90 s."""
    date = 1_785_000_000
    limited = (
        f"{{status: 403, headers: {{date: '{formatdate(date, usegmt=True)}', x-ratelimit-remaining: '0', "
        f"x-ratelimit-reset: '{date + 90}'}}, json: {{message: API rate limit exceeded}}}}"
    )
    s = scenario_from(stars(f"[{limited}, {{json: {{stargazers_count: 7}}}}]"))
    policy = Policy(name="reset", retries=1, retry_condition="transient", honour_retry_after=True)
    outcome = harness_session.run(s, policy=policy)
    assert outcome.flow.name == "Completed"
    assert outcome.waited_s == pytest.approx(90, abs=0.01)
    assert policy.task_options() == "@task(retries=1, retry_condition_fn=retry_on_transient_honouring_retry_after)"


def test_flow_retries_are_applied(harness_session: Session, scenario_from: Callable[[str], Scenario]) -> None:
    """flow_retries re-runs the whole flow (decided by the server), its delay spent on the virtual clock."""
    s = scenario_from(stars("[{status: 500}, {json: {stargazers_count: 7}}]"))
    policy = Policy(name="flowy", retries=0, flow_retries=1, flow_retry_delay_seconds=30)
    outcome = harness_session.run(s, policy=policy)
    assert outcome.flow.name == "Completed" and outcome.result == [7]
    assert [t.state.name for t in outcome.task_runs("get_stars")] == ["Failed", "Completed"]
    assert outcome.counts[f"GET {REPO}"] == 2
    assert outcome.waited_s == pytest.approx(30, abs=0.01)


class _Failed:
    """A Failed state whose result raises ``exc``, as Prefect's does."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self, raise_on_failure: bool = True, _sync: bool | None = None) -> Any:
        if raise_on_failure:
            raise self.exc
        return self.exc


def _status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", REPO)
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError("error", request=request, response=response)


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (_status_error(404), False),
        (_status_error(400), False),
        (_status_error(500), True),
        (_status_error(429), True),
        (_status_error(403, {"x-ratelimit-remaining": "0"}), True),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.ConnectError("refused"), True),
        (KeyError("stargazers_count"), False),
    ],
    ids=["404", "400", "500", "429", "403-rate-limit", "read-timeout", "connect-error", "KeyError"],
)
def test_production_transient_condition_judges_by_the_exception(exc: BaseException, retried: bool) -> None:
    """The copyable condition, for tasks that call raise_for_status: 5xx, 429, rate limits and network errors."""
    assert retry_on_transient(None, None, _Failed(exc)) is retried


def test_production_condition_honouring_retry_after_sleeps_what_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The copyable honouring condition sleeps Retry-After (capped at an hour) before allowing the retry."""
    slept: list[float] = []
    monkeypatch.setattr(policies_module.conditions, "time", SimpleNamespace(sleep=slept.append, time=time.time))
    assert retry_on_transient_honouring_retry_after(None, None, _Failed(_status_error(503, {"retry-after": "7"})))
    assert not retry_on_transient_honouring_retry_after(None, None, _Failed(_status_error(404, {"retry-after": "7"})))
    assert retry_on_transient_honouring_retry_after(None, None, _Failed(_status_error(429, {"retry-after": "99999"})))
    assert slept == [7.0, 3600.0]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "120"}, 120.0),
        ({"date": "Wed, 21 Oct 2015 07:28:00 GMT", "retry-after": "Wed, 21 Oct 2015 07:30:00 GMT"}, 120.0),
        (
            {"date": "Wed, 21 Oct 2015 07:28:00 GMT", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1445412540"},
            60.0,
        ),
        (
            {"date": "Wed, 21 Oct 2015 07:28:00 GMT", "x-ratelimit-remaining": "12", "x-ratelimit-reset": "1445412540"},
            None,
        ),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
    ids=["seconds", "http-date", "ratelimit-reset", "not-exhausted", "garbage", "none"],
)
def test_retry_after_seconds(headers: dict[str, str], wait: float | None) -> None:
    """Retry-After in seconds or as an HTTP-date, else x-ratelimit-reset when the limit is spent, from the Date."""
    assert retry_after_seconds(httpx.Response(429, headers=headers)) == wait


# -- strategies files and names -----------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strategies.yaml"
    path.write_text(text)
    return path


def test_load_policies_reads_named_strategies(tmp_path: Path) -> None:
    """A strategies file defines strategies of one's own and may name presets bare."""
    path = write(
        tmp_path,
        """
strategies:
  patient:
    tasks: "get_*"
    retries: 5
    retry_delay_seconds: {exponential: {base: 1, factor: 2, cap: 30}}
    retry_jitter_factor: 0.5
    retry_condition: transient
    honour_retry_after: true
    timeout_seconds: 30
    flow_retries: 1
    flow_retry_delay_seconds: 60
  polly:
""",
    )
    defined = load_policies(path)
    assert defined["polly"] is PRESETS["polly"]
    assert defined["patient"].task_options() == (
        "@task(retries=5, retry_delay_seconds=[1, 2, 4, 8, 16], retry_jitter_factor=0.5, "
        "retry_condition_fn=retry_on_transient_honouring_retry_after, timeout_seconds=30) on tasks 'get_*' "
        "@flow(retries=1, retry_delay_seconds=60)"
    )
    assert resolve("patient", defined) is defined["patient"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "strategies:\n  patient:\n    retires: 3\n",
            r":3: strategies\.patient\.retires: unknown key 'retires'; "
            r"did you mean 'retries'\?",
        ),
        (
            "strategies:\n  patient:\n    retries: -1\n",
            r":3: strategies\.patient\.retries: expected a whole number of retries >= 0, got -1",
        ),
        (
            "strategies:\n  patient:\n    retries: 2\n    retry_condition: transent\n",
            r":4: strategies\.patient\.retry_condition: unknown retry condition 'transent'; did you mean 'transient'\?",
        ),
        (
            "strategies:\n  patient:\n    retry_delay_seconds: {exponental: {base: 1}}\n    retries: 2\n",
            r":3: strategies\.patient\.retry_delay_seconds: .*did you mean 'exponential'\?",
        ),
        (
            "strategies:\n  patient:\n    retry_delay_seconds: {exponential: {base: 1}}\n",
            r":3: strategies\.patient\.retry_delay_seconds: exponential delays need `retries`",
        ),
        (
            "strategies:\n  transent:\n",
            r":2: strategies\.transent: unknown strategy 'transent'; did you mean 'transient'\?",
        ),
        ("strategies:\n  patient: {retries: [3\n", r":3: invalid YAML"),
        ("patient: {retries: 3}\n", r":1: a strategies file is one YAML document with a `strategies:` mapping"),
    ],
    ids=[
        "unknown-key",
        "negative-retries",
        "bad-condition",
        "bad-delays",
        "exponential-without-retries",
        "unknown-preset",
        "yaml-syntax",
        "no-strategies-key",
    ],
)
def test_load_policies_errors_name_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    """Every problem in a strategies file reads ``file:line: field: problem``, with the fix when there is one."""
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_policies(path)
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"{path}:"), first
    assert re.search(message, first), first


def test_unknown_strategy_name_suggests_the_closest() -> None:
    """``--strategies transent`` names the strategy it probably meant."""
    with pytest.raises(KeyError, match="unknown strategy 'transent'; did you mean 'transient'"):
        resolve("transent")


def test_unknown_strategy_in_a_scenario_suggests_the_closest(scenario_from: Callable[[str], Scenario]) -> None:
    """A scenario's ``strategies:`` with a misspelt preset fails validation with did-you-mean and its line."""
    with pytest.raises(
        ScenarioError,
        match=r"scenario\.yaml:9: strategies\.no_retry: unknown strategy 'no_retry'; "
        r"did you mean 'no_retries'\?",
    ):
        scenario_from(stars(f"[{NOT_FOUND}]", "strategies:\n  no_retry:\n    expect: {flow: Failed}\n"))


# -- strategies in pytest -----------------------------------------------------------------------

STRATEGY_SCENARIO = f"""
name: stars 404
flow: github_stars
parameters: {{repos: [octo/cat]}}
endpoints:
  - request: GET {REPO}
    responses: [{NOT_FOUND}]
expect:
  flow: Failed
  calls: {{GET {REPO}: 4}}
strategies:
  transient:
    expect:
      flow: Failed
      tasks: {{get_stars: {{state: Failed, retries: 0}}}}
      calls: {{GET {REPO}: 1}}
  no_retries:
    expect:
      flow: Failed
      calls: {{GET {REPO}: 4}}
"""


def test_strategies_are_items_named_scenario_strategy(pytester: pytest.Pytester) -> None:
    """Two strategies give three items; a wrong per-strategy expectation fails naming the strategy and its options."""
    pytester.makefile(".yaml", **{"scenarios/stars": STRATEGY_SCENARIO})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*stars.yaml::stars 404 PASSED*",
            "*stars.yaml::stars 404[[]transient[]] PASSED*",
            "*stars.yaml::stars 404[[]no_retries[]] FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*scenario 'stars 404' under strategy 'no_retries' (@task(retries=0)) (*stars.yaml:*) "
            "did not do what it expects:",
            f"*stars.yaml:*: expect.calls[[]GET {REPO}[]]: expected 4, observed 1",
        ]
    )


def test_scenario_strategies_run_and_check_in_process(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """``Scenario.cases`` gives the scenario as written, then one case per strategy with its own expectations."""
    s = scenario_from(STRATEGY_SCENARIO)
    cases = s.cases()
    assert [label for label, _, _ in cases] == ["stars 404", "stars 404[transient]", "stars 404[no_retries]"]
    label, variant, policy = cases[1]
    assert policy is PRESETS["transient"]
    assert check(variant, harness_session.run(variant, policy=policy)) == []


def test_tasks_called_through_an_imported_module_are_known_and_configured(
    harness_session: Session, tmp_path: Path
) -> None:
    """`import pkg.tasks as t; t.fetch()`: validation knows the task, and a strategy reaches it."""
    from harness import load_file

    (tmp_path / "shared_tasks_pkg").mkdir()
    (tmp_path / "shared_tasks_pkg" / "__init__.py").write_text("")
    (tmp_path / "shared_tasks_pkg" / "tasks.py").write_text(
        "import httpx\nfrom prefect import task\n\n\n"
        "@task(retries=1)\ndef fetch_shared(url: str) -> int:\n"
        "    return httpx.get(url).raise_for_status().status_code\n"
    )
    (tmp_path / "flow_using_shared_tasks.py").write_text(
        "from prefect import flow\nimport shared_tasks_pkg.tasks as t\n\n\n"
        "@flow\ndef uses_shared(url: str = 'https://shared.test/x') -> int:\n    return t.fetch_shared(url)\n"
    )
    (tmp_path / "s.yaml").write_text(
        "name: shared tasks\nflow: flow_using_shared_tasks:uses_shared\n"
        "endpoints:\n  - request: GET https://shared.test/x\n    responses: [{status: 500}, {status: 200}]\n"
        "expect:\n  flow: Completed\n  tasks:\n    fetch_shared: {state: Completed, retries: 1}\n"
        "strategies:\n  no_retries:\n    expect:\n      flow: Failed\n"
        "      tasks:\n        fetch_shared: {state: Failed, retries: 0}\n"
    )
    (scenario,) = load_file(tmp_path / "s.yaml")
    assert isinstance(scenario, Scenario), scenario
    for _, case, policy in scenario.cases():
        outcome = harness_session.run(case, policy=policy)
        assert check(case, outcome) == []
