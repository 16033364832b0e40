"""Invalid scenario files: each is refused with its line, its field path and a message naming the fix."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import NamedTuple

import pytest

from harness import Problem, Scenario, ScenarioError
from harness.scenario.loader import load_file, load_paths
from harness.scenario.problems import MAX_BYTES

# Lines 1-4 of most documents below; endpoint steps start on line 8.
HEAD = "name: bad\nflow: github_stars\nparameters:\n  repos: [PrefectHQ/prefect]\n"
GET = "endpoints:\n  - request: GET https://api.github.com/repos/PrefectHQ/prefect\n    responses:\n"
CHAOS = "endpoints:\n  - request: GET https://api.github.com/repos/PrefectHQ/prefect\n    chaos:\n"  # keys on line 8


class Byte(NamedTuple):
    """A location known only as a byte offset (the file has no usable lines)."""

    offset: int


def problems_of(path: Path) -> list[Problem]:
    """Every problem the loader reports for ``path``, file-level or per document."""
    try:
        items = load_file(path)
    except ScenarioError as exc:
        return list(exc.problems)
    return [p for item in items if isinstance(item, ScenarioError) for p in item.problems]


BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefghi", "bcdefghij", strict=True)
)

CASES = [
    # -- file level: YAML itself ------------------------------------------------------
    pytest.param(
        "name: bad\nflow: [github_stars\nparameters: {}\n", 3, "", "invalid YAML", id="syntax-unclosed-flow-list"
    ),
    pytest.param(
        "name: bad\nflow: github_stars\n  oops: indented\n",
        3,
        "",
        "mapping values are not allowed",
        id="syntax-bad-indent",
    ),
    pytest.param(
        "name: 'bad\nflow: github_stars\n", 3, "", "while scanning a quoted scalar", id="syntax-unclosed-quote"
    ),
    pytest.param(
        "name: bad\nflow: github_stars\nseed: *nowhere\n",
        3,
        "",
        "undefined alias 'nowhere'",
        id="syntax-undefined-alias",
    ),
    pytest.param(
        "name: bad\nflow: github_stars\nparameters:\n\trepos: [PrefectHQ/prefect]\n",
        4,
        "",
        "tab used for indentation; YAML indents with spaces",
        id="tab-indentation",
    ),
    pytest.param(
        'name: "tab\there is fine"\nflow: github_stars\nparameters:\n  \trepos: []\n',
        4,
        "",
        "tab used for indentation",
        id="tab-indentation-after-a-legal-tab",
    ),
    pytest.param(
        HEAD + "description: a\x00b\n", 5, "", "character '\\x00' (U+0000) is not allowed", id="nul-character"
    ),
    pytest.param(
        HEAD + "description: " + "[" * 150 + "]" * 150 + "\n",
        5,
        "",
        "nests deeper than 100 levels",
        id="nesting-too-deep",
    ),
    pytest.param(HEAD + "? [a, b]\n: x\n", 5, "", "found a list as a key", id="list-as-key"),
    pytest.param("", 1, "", "file holds no scenario (it is empty)", id="empty-file"),
    pytest.param("# only a comment\n---\n", 1, "", "file holds no scenario", id="only-comments"),
    pytest.param(b"name: bad\nflow: github_stars\ndescription: caf\xe9\n", Byte(45), "", "not UTF-8", id="not-utf8"),
    pytest.param(
        b"name: bad\nflow: github_stars\n#" + b"x" * MAX_BYTES + b"\n",
        Byte(MAX_BYTES),
        "",
        "limited to 1 MiB",
        id="over-1-MiB",
    ),
    pytest.param(HEAD + BOMB, 1, "", "alias bomb", id="billion-laughs"),
    # -- document shape --------------------------------------------------------------
    pytest.param(
        "name: bad\nflow: github_stars\nname: again\n",
        3,
        "name",
        "duplicate key 'name' (first on line 1)",
        id="duplicate-key",
    ),
    pytest.param(
        HEAD + "expect:\n  flow: Completed\n  tasks: {get_stars: Completed}\n  flow: Failed\n",
        8,
        "expect.flow",
        "duplicate key 'flow' (first on line 6)",
        id="duplicate-nested-key",
    ),
    pytest.param(
        "- name: bad\n  flow: github_stars\n", 1, "", "separate them with '---', not '- '", id="root-is-a-list"
    ),
    pytest.param(
        "just some words\n", 1, "", "must be a mapping of keys, got 'just some words' (str)", id="root-is-a-scalar"
    ),
    pytest.param(
        HEAD + "---\n42\n", 6, "", "must be a mapping of keys, got 42 (int)", id="second-document-is-a-number"
    ),
    pytest.param(
        HEAD + "endpoint: []\n",
        5,
        "endpoint",
        "unknown key 'endpoint'; did you mean 'endpoints'?",
        id="unknown-key-top",
    ),
    pytest.param(
        HEAD + "expect:\n  flw: Completed\n", 6, "expect.flw", "did you mean 'flow'?", id="unknown-key-expect"
    ),
    pytest.param(
        HEAD + GET + "      - status: 200\n        jsn: {stargazers_count: 1}\n",
        9,
        "endpoints[0].responses[0].jsn",
        "unknown key 'jsn'; did you mean 'json'?",
        id="unknown-key-step",
    ),
    pytest.param(
        HEAD + CHAOS + "      rate: 0.5\n      fault: [{status: 500}]\n      otherwise: {status: 200}\n",
        9,
        "endpoints[0].chaos.fault",
        "unknown key 'fault'; did you mean 'faults'?",
        id="unknown-key-chaos",
    ),
    pytest.param(
        HEAD + "expect:\n  tasks:\n    get_stars:\n      state: Completed\n      retry: 3\n",
        9,
        "expect.tasks.get_stars.retry",  # a mapping written alone: no index the file does not have
        "did you mean 'retries'?",
        id="unknown-key-task-run",
    ),
    pytest.param(HEAD + "1: one\n", 5, "1", "unknown key 1 (int)", id="number-as-top-key"),
    # -- wrong types --------------------------------------------------------------------
    pytest.param(
        HEAD + GET + "      - status: 500\n        times: twice\n",
        9,
        "endpoints[0].responses[0].times",
        "expected a whole number >= 1 (the number of calls this step serves), got 'twice' (str)",
        id="times-is-a-string",
    ),
    pytest.param(
        HEAD + GET + "      - status: 500\n        times: 0\n",
        9,
        "endpoints[0].responses[0].times",
        "expected a whole number >= 1",
        id="times-zero",
    ),
    pytest.param(
        HEAD + GET + "      - status: 500\n        times: -2\n",
        9,
        "endpoints[0].responses[0].times",
        "got -2 (int)",
        id="times-negative",
    ),
    pytest.param(
        "name: bad\nflow: github_stars\nparameters:\n  - repos\n",
        3,
        "parameters",
        "expected a mapping of the flow's parameter names to values, got ['repos'] (list)",
        id="parameters-is-a-list",
    ),
    pytest.param(
        "name: 42\nflow: github_stars\nparameters: {repos: []}\n",
        1,
        "name",
        "expected a non-empty string, got 42 (int); quote it: '42'",
        id="name-is-a-number",
    ),
    pytest.param(
        HEAD + "seed: lucky\n", 5, "seed", "expected a whole number, got 'lucky' (str)", id="seed-is-a-string"
    ),
    pytest.param(
        HEAD + "expect: Completed\n",
        5,
        "expect",
        "expected a mapping of expectations",
        id="expect-is-a-string",
    ),
    pytest.param(
        HEAD + "endpoints:\n  request: GET https://api.github.com/\n",
        5,
        "endpoints",
        "expected a list of endpoints",
        id="endpoints-is-a-mapping",
    ),
    pytest.param(
        HEAD + GET + "      - 500\n",
        8,
        "endpoints[0].responses[0]",
        "expected a response step such as",
        id="step-is-a-number",
    ),
    pytest.param(HEAD + "xfail: true\n", 5, "xfail", "got True (bool); quote it: 'true'", id="xfail-is-a-bool"),
    # -- ranges -------------------------------------------------------------------------
    pytest.param(
        HEAD + CHAOS + "      rate: 1.5\n      faults: [{status: 500}]\n      otherwise: {status: 200}\n",
        8,
        "endpoints[0].chaos.rate",
        "expected a probability from 0 to 1, got 1.5",
        id="chaos-rate-above-1",
    ),
    pytest.param(
        HEAD + CHAOS + "      rate: -0.1\n      faults: [{status: 500}]\n      otherwise: {status: 200}\n",
        8,
        "endpoints[0].chaos.rate",
        "expected a probability from 0 to 1, got -0.1",
        id="chaos-rate-below-0",
    ),
    pytest.param(
        HEAD + CHAOS + "      rate: 0.5\n      faults: []\n      otherwise: {status: 200}\n",
        9,
        "endpoints[0].chaos.faults",
        "expected a non-empty list of response steps, got []",
        id="chaos-no-faults",
    ),
    pytest.param(
        HEAD + GET + "      - status: 600\n",
        8,
        "endpoints[0].responses[0].status",
        "expected an HTTP status code from 100 to 599, got 600",
        id="status-above-599",
    ),
    pytest.param(
        HEAD + GET + "      - status: 99\n",
        8,
        "endpoints[0].responses[0].status",
        "from 100 to 599, got 99",
        id="status-below-100",
    ),
    # -- response steps ---------------------------------------------------------------
    pytest.param(
        HEAD + GET + "      - fault: read_timout\n",
        8,
        "endpoints[0].responses[0].fault",
        "unknown fault 'read_timout'; did you mean 'read_timeout'?",
        id="unknown-fault",
    ),
    pytest.param(
        HEAD + GET + "      - malformed: truncated\n",
        8,
        "endpoints[0].responses[0].malformed",
        "unknown malformed body 'truncated'; did you mean 'truncated_json'?",
        id="unknown-malformed",
    ),
    pytest.param(
        HEAD + GET + "      - fault: read_timeout\n        malformed: html\n",
        8,
        "endpoints[0].responses[0]",
        "not both `fault` and `malformed`",
        id="fault-and-malformed",
    ),
    pytest.param(
        HEAD + GET + "      - fault: read_timeout\n        status: 500\n",
        8,
        "endpoints[0].responses[0]",
        "a `fault` step sends no answer; remove status",
        id="fault-and-status",
    ),
    pytest.param(
        HEAD + GET + "      - json: {stargazers_count: 1}\n        text: hello\n",
        8,
        "endpoints[0].responses[0]",
        "a step has one body; got json and text: keep one",
        id="json-and-text",
    ),
    pytest.param(
        HEAD + GET + "      - body_base64: 'not base64!'\n",
        8,
        "endpoints[0].responses[0].body_base64",
        "not valid base64",
        id="bad-base64",
    ),
    pytest.param(
        HEAD + GET + "      - status: 200\n        latency: -1\n",
        9,
        "endpoints[0].responses[0].latency",
        "latency must be >= 0 seconds, got -1",
        id="latency-negative",
    ),
    pytest.param(
        HEAD + GET + "      - status: 200\n        latency: {uniform: [2, 1]}\n",
        9,
        "endpoints[0].responses[0].latency",
        "uniform latency must be [low, high] seconds with 0 <= low <= high, got [2, 1]",
        id="latency-uniform-reversed",
    ),
    pytest.param(
        HEAD + GET + "      - status: 200\n        latency: {lognormal: {median: 1}}\n",
        9,
        "endpoints[0].responses[0].latency",
        "lognormal latency must be {median: m > 0, sigma: s >= 0}",
        id="latency-lognormal-without-sigma",
    ),
    pytest.param(
        HEAD + GET + "      - status: 200\n        latency: {gauss: [1, 2]}\n",
        9,
        "endpoints[0].responses[0].latency",
        "got {'gauss': [1, 2]} (mapping)",
        id="latency-unknown-shape",
    ),
    pytest.param(
        HEAD + GET + "      - status: 200\n        latency: .inf\n",
        9,
        "endpoints[0].responses[0].latency",
        "got inf (float)",
        id="latency-infinite",
    ),
    # -- request lines ------------------------------------------------------------------
    pytest.param(
        HEAD + "endpoints:\n  - request: https://api.github.com/repos/o/r\n    responses: [{status: 200}]\n",
        6,
        "endpoints[0].request",
        "request must be 'METHOD URL'",
        id="request-one-word",
    ),
    pytest.param(
        HEAD + "endpoints:\n  - request: GET https://api.github.com/repos/o/r now\n    responses: [{status: 200}]\n",
        6,
        "endpoints[0].request",
        "got 'GET https://api.github.com/repos/o/r now'",
        id="request-three-words",
    ),
    pytest.param(
        HEAD + "endpoints:\n  - request: GET /repos/o/r\n    responses: [{status: 200}]\n",
        6,
        "endpoints[0].request",
        "request URL must be absolute http(s), got '/repos/o/r'",
        id="request-relative-url",
    ),
    pytest.param(
        HEAD + "endpoints:\n  - request: FETCH https://api.github.com/\n    responses: [{status: 200}]\n",
        6,
        "endpoints[0].request",
        "unknown HTTP method 'FETCH'",
        id="request-unknown-method",
    ),
    pytest.param(
        HEAD + "endpoints:\n  - request: get https://api.github.com/\n    responses: [{status: 200}]\n",
        6,
        "endpoints[0].request",
        "unknown HTTP method 'get'; did you mean 'GET'?",
        id="request-lowercase-method",
    ),
    pytest.param(
        HEAD + "endpoints:\n  - request: GET https://api.github.com/\n",
        6,
        "endpoints[0]",
        "an endpoint needs `responses`, `chaos` or both",
        id="endpoint-without-responses-or-chaos",
    ),
    # -- required keys and flows ------------------------------------------------------
    pytest.param(
        "flow: github_stars\nparameters: {repos: []}\n", 1, "name", "required key 'name' is missing", id="missing-name"
    ),
    pytest.param(
        "name: bad\nparameters: {repos: []}\n",
        1,
        "flow",
        "required key 'flow' is missing; add `flow:` with a built-in",
        id="missing-flow",
    ),
    pytest.param(
        "name: bad\nflow: github_star\n",
        2,
        "flow",
        "unknown flow 'github_star'",
        id="unknown-builtin-flow",
    ),
    pytest.param(
        "name: bad\nflow: no_such_package.flows:etl\n",
        2,
        "flow",
        "cannot import flow module 'no_such_package.flows': ModuleNotFoundError",
        id="unimportable-module",
    ),
    pytest.param(
        "name: bad\nflow: harness.flows.github:get_stars\n",
        2,
        "flow",
        "'harness.flows.github:get_stars' is a Task, not a Prefect flow (decorate it with @flow)",
        id="attribute-is-a-task",
    ),
    pytest.param(
        "name: bad\nflow: harness.flows.github:github_starz\n",
        2,
        "flow",
        "has no attribute 'github_starz'; did you mean 'github_stars'?",
        id="attribute-missing",
    ),
    pytest.param(
        "name: bad\nflow: 'harness.flows.github:'\n",
        2,
        "flow",
        "'package.module:flow_function'",
        id="flow-path-without-function",
    ),
    pytest.param(
        HEAD + "  repo: PrefectHQ/prefect\n",
        5,
        "parameters.repo",
        "flow 'github_stars' has no parameter 'repo'; did you mean 'repos'?",
        id="unknown-flow-parameter",
    ),
    pytest.param(
        "name: bad\nflow: github_stars\n",
        2,
        "parameters.repos",
        "needs parameter 'repos'; add it under `parameters:`",
        id="missing-required-parameter",
    ),
    pytest.param(
        "name: bad\nflow: cfpb_etl\nparameters: {size: 5, db: x.db}\n",
        3,
        "parameters.db",
        "has no parameter 'db'; expected one of: size, db_path",
        id="unknown-cfpb-parameter",
    ),
    # -- expectations -------------------------------------------------------------------
    pytest.param(
        HEAD + "expect:\n  tasks:\n    get_starz: Completed\n",
        7,
        "expect.tasks.get_starz",
        "flow 'github_stars' defines no task 'get_starz'; did you mean 'get_stars'?",
        id="unknown-task",
    ),
    pytest.param(
        HEAD + "expect:\n  hooks:\n    tasks:\n      get_star: {on_failure: 0}\n",
        8,
        "expect.hooks.tasks.get_star",
        "flow 'github_stars' defines no task 'get_star'; did you mean 'get_stars'?",
        id="hooks-unknown-task",
    ),
    pytest.param(
        HEAD + "expect:\n  flow: Complete\n",
        6,
        "expect.flow.state",
        "unknown state name 'Complete'; did you mean 'Completed'?",
        id="unknown-state-name",
    ),
    pytest.param(
        HEAD + "expect:\n  tasks:\n    get_stars: [Completed, Complete]\n",
        7,
        "expect.tasks.get_stars[1].state",
        "did you mean 'Completed'?",
        id="unknown-state-name-second-run",
    ),
    pytest.param(
        HEAD + "expect:\n  flow: {type: failed}\n",
        6,
        "expect.flow.type",
        "unknown state type 'failed'; did you mean 'FAILED'?",
        id="unknown-state-type",
    ),
    pytest.param(
        HEAD + "expect:\n  flow: 3\n",
        6,
        "expect.flow",
        "expected a state name such as 'Completed'",
        id="flow-state-is-a-number",
    ),
    pytest.param(
        HEAD + "expect:\n  flow:\n    state: Failed\n    message: '(unclosed'\n",
        8,
        "expect.flow.message",
        "message is not a valid regular expression",
        id="invalid-regex",
    ),
    pytest.param(
        HEAD
        + GET
        + "      - status: 200\nexpect:\n  calls:\n    GET https://api.github.com/repos/PrefectHQ/prefekt: 1\n",
        11,
        "expect.calls.GET https://api.github.com/repos/PrefectHQ/prefekt",
        "is not a declared endpoint; did you mean 'GET https://api.github.com/repos/PrefectHQ/prefect'?",
        id="calls-undeclared-endpoint",
    ),
    pytest.param(
        HEAD
        + GET
        + "      - status: 200\nexpect:\n  calls:\n    GET https://api.github.com/repos/PrefectHQ/prefect: -1\n",
        11,
        "expect.calls.GET https://api.github.com/repos/PrefectHQ/prefect",
        "expected a whole number of calls >= 0, got -1",
        id="calls-negative",
    ),
    pytest.param(
        HEAD + "expect:\n  invariants: [completes, no_data_los]\n",
        6,
        "expect.invariants[1]",
        "unknown invariant 'no_data_los'; did you mean 'no_data_loss'?",
        id="unknown-invariant",
    ),
    pytest.param(
        HEAD + "expect:\n  invariants:\n    - bounded_calls: -1\n",
        7,
        "expect.invariants[0]",
        "bounded_calls must be a whole number >= 0, got -1",
        id="bounded-calls-negative",
    ),
    pytest.param(
        HEAD + "expect:\n  invariants:\n    - completes\n    - mymod_never_defined:holds\n",
        8,
        "expect.invariants[1]",
        "cannot import invariant module 'mymod_never_defined': ModuleNotFoundError: no module named "
        "'mymod_never_defined' in",
        id="invariant-module-unknown",
    ),
    pytest.param(
        HEAD + "expect:\n  invariants: ['harness.flows.github:get_starz']\n",
        6,
        "expect.invariants[0]",
        "invariant module 'harness.flows.github' has no attribute 'get_starz'; did you mean 'get_stars'?",
        id="invariant-function-unknown",
    ),
    pytest.param(
        HEAD + "expect:\n  invariants: ['harness.flows.cfpb:URL']\n",
        6,
        "expect.invariants[0]",
        "invariant 'harness.flows.cfpb:URL' is a str, not a function",
        id="invariant-not-a-function",
    ),
    pytest.param(
        HEAD + "strategies:\n  careful:\n    retries: 2\n    retry_condition: harness.policies:retry_on_transent\n",
        8,
        "strategies.careful.retry_condition",
        "has no attribute 'retry_on_transent'; did you mean 'retry_on_transient'?",
        id="retry-condition-function-unknown",
    ),
    pytest.param(
        HEAD + "strategies:\n  careful:\n    retries: 2\n    retry_condition: no_such_conditions:retry\n",
        8,
        "strategies.careful.retry_condition",
        "cannot import retry condition module 'no_such_conditions'",
        id="retry-condition-module-unknown",
    ),
    pytest.param(
        HEAD + "strategies:\n  careful:\n    retries: 2\n    expect:\n      invariants: [no_such_invariants:holds]\n",
        9,
        "strategies.careful.expect.invariants[0]",
        "cannot import invariant module 'no_such_invariants'",
        id="strategy-invariant-module-unknown",
    ),
    pytest.param(
        HEAD + "expect:\n  tasks:\n    get_stars: {runs: -1}\n",
        7,
        "expect.tasks.get_stars.runs",
        "expected a whole number >= 0 (task runs of this name that started; 0 = never ran), got -1",
        id="runs-negative",
    ),
    pytest.param(
        HEAD + "expect:\n  hooks:\n    flow: {on_failure: 1, on_retry: 1}\n",
        7,
        "expect.hooks.flow.on_retry",
        "unknown key 'on_retry'",
        id="hooks-unknown-kind",
    ),
    pytest.param(
        HEAD + "expect:\n  hooks:\n    tasks:\n      get_stars: {on_failure: -1}\n",
        8,
        "expect.hooks.tasks.get_stars.on_failure",
        "a whole number of times >= 0",
        id="hooks-negative",
    ),
    pytest.param(
        HEAD + "expect:\n  tasks:\n    get_stars: {runs: 0, state: Failed}\n",
        7,
        "expect.tasks.get_stars",
        "`runs: 0` says the task never ran: it has no state or retries to check",
        id="runs-zero-with-a-state",
    ),
    pytest.param(
        HEAD + "expect:\n  tasks:\n    get_stars: [{runs: 2}, Completed]\n",
        7,
        "expect.tasks.get_stars",
        "`runs` has no place in the list form",
        id="runs-in-the-list-form",
    ),
    pytest.param(
        HEAD
        + "expect:\n  flow: Completed\n  tasks:\n    get_stars: {state: Completed, retries: 0}\n"
        + "strategies:\n  no_retries:\n    expect:\n      flow: Completed\n",
        11,
        "strategies.no_retries.expect",
        "strategy 'no_retries' checks less than the scenario's own expect, which it replaces: "
        "state tasks.get_stars.state, tasks.get_stars.retries under this strategy too",
        id="variant-checks-less-than-its-base",
    ),
    pytest.param(
        HEAD
        + "expect:\n  flow: Completed\n  hooks:\n    flow: {on_failure: 0}\n"
        + "strategies:\n  no_retries:\n    expect:\n      flow: Completed\n",
        11,
        "strategies.no_retries.expect",
        "state hooks.flow.on_failure under this strategy too",
        id="variant-drops-the-hooks",
    ),
    pytest.param(
        HEAD + "expect:\n  flow: Completed\nstrategies:\n  no_retries:\n",
        8,
        "strategies.no_retries",
        "strategy 'no_retries' checks less than the scenario's own expect, which it replaces: state flow.state",
        id="variant-without-expect",
    ),
    pytest.param(
        HEAD + "expect:\n  sqlite: {path: x.db, query: select 1}\n",
        6,
        "expect.sqlite.equals",
        "required key 'equals' is missing",
        id="sqlite-without-equals",
    ),
    pytest.param(
        HEAD + "strategies:\n  careful:\n    retries: 2\n    name: patient\n",
        5,
        "strategies",
        "strategy 'careful': unknown key 'name'; a strategy is named by the key it is listed under",
        id="strategy-body-names-itself",
    ),
]


@pytest.mark.parametrize(("source", "at", "field", "fragment"), CASES)
def test_invalid_scenario(tmp_path: Path, source: str | bytes, at: int | Byte, field: str, fragment: str) -> None:
    """The loader names the line (or byte), the field path and the fix of one problem."""
    path = tmp_path / "scenario.yaml"
    if isinstance(source, bytes):
        path.write_bytes(source)
    else:
        path.write_text(source, encoding="utf-8")
    problems = problems_of(path)
    assert len(problems) == 1, "\n".join(map(str, problems))
    problem = problems[0]
    where = Byte(problem.offset if problem.offset is not None else -1) if isinstance(at, Byte) else problem.line
    assert (where, problem.field) == (at, field), str(problem)
    assert fragment in problem.message
    assert problem.path == path
    assert not any(leak in problem.field for leak in ("function-", "[key]", "Line")), problem.field


def test_alias_bomb_fails_fast_and_small(tmp_path: Path) -> None:
    """A billion-laughs document is refused in well under 2 s without expanding it in memory."""
    path = tmp_path / "bomb.yaml"
    path.write_text(HEAD + BOMB, encoding="utf-8")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ScenarioError, match="alias bomb"):
            load_file(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 20 * 2**20


def test_good_document_still_loads_beside_a_bad_one(tmp_path: Path) -> None:
    """A semantic error fails only its own document; the next one is a Scenario."""
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "name: broken\nflow: github_stars\nparameters: {repos: []}\nseed: lucky\n"
        "---\n"
        "name: fine\nflow: github_stars\nparameters: {repos: [PrefectHQ/prefect]}\n",
        encoding="utf-8",
    )
    bad, good = load_file(path)
    assert isinstance(bad, ScenarioError) and (bad.first.line, bad.first.field) == (4, "seed")
    assert isinstance(good, Scenario) and (good.name, good.line) == ("fine", 6)


def test_duplicate_names_in_one_run(tmp_path: Path) -> None:
    """Two scenarios with one name: the second is an error pointing at the first."""
    path = tmp_path / "twice.yaml"
    path.write_text(
        "name: same\nflow: github_stars\nparameters: {repos: []}\n---\n"
        "flow: github_stars\nname: same\nparameters: {repos: []}\n",
        encoding="utf-8",
    )
    first, second = load_paths([path])
    assert isinstance(first, Scenario)
    assert isinstance(second, ScenarioError)
    assert (second.first.line, second.first.field) == (6, "name")
    assert f"duplicate scenario name 'same' (first at {path}:1)" in second.first.message


def test_flow_module_that_exits_on_import(tmp_path: Path) -> None:
    """A flow module calling sys.exit() at import is a problem on `flow`, not a dead loader."""
    (tmp_path / "exits_on_import_mod.py").write_text("import sys\nsys.exit(3)\n", encoding="utf-8")
    path = tmp_path / "s.yaml"
    path.write_text("name: exits\nflow: exits_on_import_mod:etl\n", encoding="utf-8")
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (2, "flow")
    assert "cannot import flow module 'exits_on_import_mod': SystemExit: 3" in problem.message


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            HEAD
            + GET
            + "      - &ok {status: 200, json: {stargazers_count: 1}}\n      - <<: *ok\n        status: 201\n",
            id="merge-key-overridden",
        ),
        pytest.param(HEAD + "description: |\n  first\n  \tsecond, after a tab\n", id="tab-inside-block-scalar"),
        pytest.param(HEAD + "---\n", id="trailing-document-marker"),
        pytest.param(HEAD + "expect:\n  tasks:\n    get_stars: [Completed]\n", id="task-runs-as-state-names"),
    ],
)
def test_near_misses_are_valid(tmp_path: Path, source: str) -> None:
    """Inputs that look wrong but are valid YAML and valid scenarios load."""
    path = tmp_path / "ok.yaml"
    path.write_text(source, encoding="utf-8")
    (item,) = load_file(path)
    assert isinstance(item, Scenario), str(item)


def test_validate_cli_reports_bad_files_without_traceback(tmp_path: Path) -> None:
    """`harness validate` exits 2 and names file:line and field for each bad file, no traceback."""
    files = {
        "syntax.yaml": ("name: bad\nflow: [github_stars\nparameters: {}\n", ":3: invalid YAML"),
        "fault.yaml": (
            HEAD + GET + "      - fault: read_timout\n",
            ":8: endpoints[0].responses[0].fault: unknown fault",
        ),
        "task.yaml": (HEAD + "expect:\n  tasks:\n    get_starz: Completed\n", ":7: expect.tasks.get_starz: flow"),
        "bomb.yaml": (HEAD + BOMB, ":1: invalid YAML: document expands"),
        "latin1.yaml": (b"name: caf\xe9\nflow: github_stars\n", ": byte 9: file is not UTF-8"),
        "invariant.yaml": (
            HEAD + "expect:\n  invariants: [mymod:never_defined]\n",
            ":6: expect.invariants[0]: cannot import invariant module 'mymod'",
        ),
    }
    for name, (source, _) in files.items():
        data = source if isinstance(source, bytes) else source.encode()
        (tmp_path / name).write_bytes(data)
    (tmp_path / "good.yaml").write_text(HEAD, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", *files, "good.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    for name, (_, expected) in files.items():
        assert f"\n{name}{expected}" in f"\n{result.stderr}", result.stderr
    assert "Traceback" not in result.stderr
    assert "1 scenario(s) valid, 6 invalid" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
