"""The JSON Schema of the language: the library validates, schema matters are refused, every shorthand agrees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from harness import Scenario
from harness.cli import main
from harness.scenario._yaml import load_documents
from harness.scenario.loader import load_file, load_policies
from harness.scenario.model import FAULTS, INVARIANTS, MALFORMED, METHODS, STATE_NAMES, STATE_TYPES
from harness.scenario.schema import DRAFT, scenario_schema, strategies_schema
from harness.scenario.strategy import PRESETS
from tests.test_invalid_scenarios import CASES, GET, HEAD

LIBRARY = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml"))
SCENARIO = Draft202012Validator(scenario_schema())
STRATEGIES = Draft202012Validator(strategies_schema())

# Every row of test_invalid_scenarios.CASES, by what refuses it; a new row fails
# test_every_invalid_row_is_classified until it is put in one of these.
SCHEMA_ROWS = {  # the schema refuses the document, as the loader does
    "root-is-a-list",
    "root-is-a-scalar",
    "second-document-is-a-number",
    "unknown-key-top",
    "unknown-key-expect",
    "unknown-key-step",
    "unknown-key-chaos",
    "unknown-key-task-run",
    "number-as-top-key",
    "times-is-a-string",
    "times-zero",
    "times-negative",
    "parameters-is-a-list",
    "name-is-a-number",
    "seed-is-a-string",
    "expect-is-a-string",
    "endpoints-is-a-mapping",
    "step-is-a-number",
    "xfail-is-a-bool",
    "chaos-rate-above-1",
    "chaos-rate-below-0",
    "chaos-no-faults",
    "status-above-599",
    "status-below-100",
    "unknown-fault",
    "unknown-malformed",
    "latency-negative",
    "latency-lognormal-without-sigma",
    "latency-unknown-shape",
    "request-one-word",
    "request-three-words",
    "request-relative-url",
    "request-unknown-method",
    "request-lowercase-method",
    "endpoint-without-responses-or-chaos",
    "missing-name",
    "missing-flow",
    "unknown-builtin-flow",
    "flow-path-without-function",
    "unknown-state-name",
    "unknown-state-name-second-run",
    "unknown-state-type",
    "flow-state-is-a-number",
    "calls-negative",
    "unknown-invariant",
    "bounded-calls-negative",
    "runs-negative",
    "hooks-unknown-kind",
    "hooks-negative",
    "runs-in-the-list-form",
    "sqlite-without-equals",
    "strategy-body-names-itself",
}
LOADER_ROWS = {  # the schema accepts the document: rules across keys, parsing inside strings, names that must exist
    "hooks-unknown-task",
    "variant-drops-the-hooks",
    "duplicate-key",  # YAML editors flag duplicate keys themselves; the parsed document has one
    "duplicate-nested-key",
    "fault-and-malformed",
    "fault-and-status",
    "json-and-text",
    "bad-base64",
    "latency-uniform-reversed",
    "latency-infinite",  # .inf has no JSON form
    "unimportable-module",
    "attribute-is-a-task",
    "attribute-missing",
    "unknown-flow-parameter",
    "missing-required-parameter",
    "unknown-cfpb-parameter",
    "unknown-task",
    "invalid-regex",
    "calls-undeclared-endpoint",
    "invariant-module-unknown",
    "invariant-function-unknown",
    "invariant-not-a-function",
    "retry-condition-function-unknown",
    "retry-condition-module-unknown",
    "strategy-invariant-module-unknown",
    "runs-zero-with-a-state",
    "variant-checks-less-than-its-base",
    "variant-without-expect",
}
UNPARSED_ROWS = {  # the file itself is refused (YAML, encoding, size): no document reaches a schema
    "syntax-unclosed-flow-list",
    "syntax-bad-indent",
    "syntax-unclosed-quote",
    "syntax-undefined-alias",
    "tab-indentation",
    "tab-indentation-after-a-legal-tab",
    "nul-character",
    "nesting-too-deep",
    "list-as-key",
    "empty-file",
    "only-comments",
    "not-utf8",
    "over-1-MiB",
    "billion-laughs",
}


def plain(value: Any) -> Any:
    """A parsed YAML value as JSON holds it: plain dicts with string keys, plain lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def documents(text: str) -> list[Any]:
    """Every document of a YAML text, read with the harness's own loader, as plain JSON values."""
    return [plain(doc) for _, doc in load_documents(text, "<test>")]


def problems(validator: Draft202012Validator, doc: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def rows(ids: set[str]) -> list[Any]:
    return [pytest.param(case.values[0], id=case.id) for case in CASES if case.id in ids]


def test_the_schema_is_a_draft_2020_12_schema() -> None:
    """Both schemas declare draft 2020-12 and are valid schemas of it."""
    for schema in (scenario_schema(), strategies_schema()):
        assert schema["$schema"] == DRAFT == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", LIBRARY, ids=[p.name for p in LIBRARY])
def test_every_library_document_validates(path: Path) -> None:
    """Each document of each scenario file in scenarios/ is valid under the scenario schema."""
    docs = documents(path.read_text(encoding="utf-8"))
    assert docs
    for i, doc in enumerate(docs):
        assert problems(SCENARIO, doc) == [], f"{path.name}, document {i + 1}"


def test_strategies_yaml_is_a_scenario_file() -> None:
    """scenarios/strategies.yaml holds scenarios with `strategies:` in them, not a strategies file."""
    path = next(p for p in LIBRARY if p.name == "strategies.yaml")
    docs = documents(path.read_text(encoding="utf-8"))
    assert len(docs) > 1 and all({"name", "flow"} <= set(doc) for doc in docs)
    assert any("strategies" in doc for doc in docs)
    assert all(problems(SCENARIO, doc) == [] for doc in docs)
    assert problems(STRATEGIES, docs[0])


def test_every_invalid_row_is_classified() -> None:
    """Each row of the invalid-input table is a schema matter, the loader's alone, or a file-level refusal."""
    ids = {case.id for case in CASES}
    assert not (SCHEMA_ROWS & LOADER_ROWS or SCHEMA_ROWS & UNPARSED_ROWS or LOADER_ROWS & UNPARSED_ROWS)
    assert ids - (SCHEMA_ROWS | LOADER_ROWS | UNPARSED_ROWS) == set(), "classify the new rows here"
    assert (SCHEMA_ROWS | LOADER_ROWS | UNPARSED_ROWS) - ids == set(), "rows gone from the table"


@pytest.mark.parametrize("source", rows(SCHEMA_ROWS))
def test_schema_refuses_what_the_loader_refuses(source: str) -> None:
    """A row that is a schema matter (unknown key, wrong type, unknown enum value, range) fails the schema."""
    assert any(problems(SCENARIO, doc) for doc in documents(source))


@pytest.mark.parametrize("source", rows(LOADER_ROWS))
def test_schema_leaves_the_rest_to_the_loader(source: str) -> None:
    """A row only the loader can judge passes the schema: the classification above is true."""
    assert all(problems(SCENARIO, doc) == [] for doc in documents(source))


STEP = HEAD + GET + "      - status: 200\n"
TASKS = HEAD + "expect:\n  tasks:\n    get_stars: "
STRATEGY = HEAD + "strategies:\n  "

SHORTHANDS = [
    # latency: seconds, {uniform: [a, b]}, {lognormal: {median, sigma}}
    pytest.param(STEP + "        latency: 0.5\n", True, id="latency-seconds"),
    pytest.param(STEP + "        latency: 2\n", True, id="latency-whole-seconds"),
    pytest.param(STEP + "        latency: null\n", True, id="latency-null"),
    pytest.param(STEP + "        latency: {uniform: [0.1, 2]}\n", True, id="latency-uniform"),
    pytest.param(STEP + "        latency: {lognormal: {median: 0.2, sigma: 0.5}}\n", True, id="latency-lognormal"),
    pytest.param(STEP + "        latency: {uniform: [1]}\n", False, id="latency-uniform-one-bound"),
    pytest.param(STEP + "        latency: {uniform: 1}\n", False, id="latency-uniform-not-a-list"),
    pytest.param(STEP + "        latency: {lognormal: {median: 0, sigma: 1}}\n", False, id="latency-median-zero"),
    pytest.param(STEP + "        latency: {lognormal: {median: 1, sigma: 1, mean: 2}}\n", False, id="latency-extra"),
    pytest.param(STEP + "        latency: {uniform: [0, 1], lognormal: {median: 1, sigma: 1}}\n", False, id="two"),
    pytest.param(STEP + "        latency: fast\n", False, id="latency-word"),
    pytest.param(STEP + "        latency: true\n", False, id="latency-bool"),
    pytest.param(STEP + "        headers: {retry-after: 60, x-ratelimit-reset: 1.5}\n", True, id="header-numbers"),
    pytest.param(STEP + "        headers: {retry-after: true}\n", False, id="header-bool"),
    # flow: a state name, or {state, type, message}
    pytest.param(HEAD + "expect: {flow: Completed}\n", True, id="flow-name"),
    pytest.param(HEAD + "expect: {flow: {state: Failed, message: boom}}\n", True, id="flow-mapping"),
    pytest.param(HEAD + "expect: {flow: {type: FAILED}}\n", True, id="flow-type"),
    pytest.param(HEAD + "expect: {flow: {}}\n", False, id="flow-empty-mapping"),
    pytest.param(HEAD + "expect: {flow: {status: Failed}}\n", False, id="flow-unknown-key"),
    pytest.param(HEAD + "expect: {flow: completed}\n", False, id="flow-lowercase"),
    # task runs: a state name, a mapping, or a list of them
    pytest.param(TASKS + "Completed\n", True, id="task-name"),
    pytest.param(TASKS + "{state: Failed, retries: 3}\n", True, id="task-mapping"),
    pytest.param(TASKS + "{runs: 0}\n", True, id="task-never-ran"),
    pytest.param(TASKS + "{runs: 2, state: Completed}\n", True, id="task-runs-alike"),
    pytest.param(TASKS + "[Completed, {state: Failed, retries: 1}]\n", True, id="task-list"),
    pytest.param(TASKS + "[{runs: 1}]\n", False, id="task-list-with-runs"),
    pytest.param(TASKS + "3\n", False, id="task-number"),
    pytest.param(TASKS + "[3]\n", False, id="task-list-of-numbers"),
    pytest.param(TASKS + "{}\n", False, id="task-empty-mapping"),
    # request: "METHOD URL"
    pytest.param(
        HEAD + "endpoints:\n  - request: GET https://api.github.com/repos/*\n    responses: [{}]\n",
        True,
        id="req-prefix",
    ),
    pytest.param(
        HEAD + "endpoints:\n  - request: POST http://localhost:8080/x?a=1\n    responses: [{}]\n", True, id="req-query"
    ),
    pytest.param(HEAD + "endpoints:\n  - request: DELETE https://h\n    responses: [{}]\n", True, id="req-bare-host"),
    pytest.param(HEAD + "endpoints:\n  - request: 'GET   https://h/x  '\n    responses: [{}]\n", True, id="req-spaces"),
    pytest.param(HEAD + "endpoints:\n  - request: GET https://*\n    responses: [{}]\n", False, id="req-no-host"),
    pytest.param(HEAD + "endpoints:\n  - request: GET https:///x\n    responses: [{}]\n", False, id="req-empty-host"),
    pytest.param(HEAD + "endpoints:\n  - request: GET ftp://h/x\n    responses: [{}]\n", False, id="req-ftp"),
    pytest.param(HEAD + "endpoints:\n  - request: [GET, https://h/x]\n    responses: [{}]\n", False, id="req-list"),
    # invariants: names, {bounded_calls: N}, module:function
    pytest.param(
        HEAD
        + "expect:\n  invariants: [completes, no_duplicates, {bounded_calls: 3}, 'harness.flows.github:get_stars']\n",
        True,
        id="invariants",
    ),
    pytest.param(HEAD + "expect:\n  invariants: [{bounded_calls: 2.5}]\n", False, id="bounded-calls-fraction"),
    pytest.param(HEAD + "expect:\n  invariants: [bounded_calls]\n", False, id="bounded-calls-bare"),
    pytest.param(HEAD + "expect:\n  invariants: [{bounded_calls: 1, at: 2}]\n", False, id="bounded-calls-extra"),
    pytest.param(HEAD + "expect:\n  invariants: ['harness.flows:']\n", False, id="invariant-half-spec"),
    # strategies: a preset's name alone, or options (plus expect)
    pytest.param(STRATEGY + "transient:\n", True, id="preset-null"),
    pytest.param(STRATEGY + "transient: {}\n", True, id="preset-empty"),
    pytest.param(STRATEGY + "no_retries: {expect: {flow: Failed}}\n", True, id="preset-with-expect"),
    pytest.param(STRATEGY + "mine: {retries: 2, retry_delay_seconds: [1, 5]}\n", True, id="options-list"),
    pytest.param(STRATEGY + "mine: {retries: 2, retry_delay_seconds: 10}\n", True, id="options-seconds"),
    pytest.param(
        STRATEGY + "mine: {retries: 2, retry_delay_seconds: {exponential: {base: 1, factor: 2, cap: 30}}}\n",
        True,
        id="options-exponential",
    ),
    pytest.param(STRATEGY + "mine: {retries: 1, retry_condition: transient}\n", True, id="condition-transient"),
    pytest.param(
        STRATEGY + "mine: {retries: 1, retry_condition: 'harness.policies:retry_on_transient'}\n", True, id="cond-fn"
    ),
    pytest.param(STRATEGY + "transient: {retries: 5}\n", True, id="preset-name-with-options"),
    pytest.param(STRATEGY + "mine:\n", False, id="unknown-preset"),
    pytest.param(STRATEGY + "mine: {expect: {flow: Failed}}\n", False, id="unknown-preset-with-expect"),
    pytest.param(STRATEGY + "mine: {retries: 1, retry_delay_seconds: {exponential: {bas: 1}}}\n", False, id="exp-key"),
    pytest.param(STRATEGY + "mine: {retries: 1, retry_delay_seconds: {linear: 1}}\n", False, id="delays-linear"),
    pytest.param(STRATEGY + "mine: {retries: 1, retry_delay_seconds: {base: 1}}\n", False, id="delays-bare-exp"),
    pytest.param(STRATEGY + "mine: {retries: 1, retry_condition: always}\n", False, id="condition-unknown"),
    pytest.param(STRATEGY + "mine: {retrys: 1}\n", False, id="option-misspelt"),
    pytest.param(STRATEGY + "mine: {retries: 1, policy: {retries: 1}}\n", False, id="no-policy-key"),
    pytest.param(STRATEGY + "mine: {retries: 1, __name__: other}\n", False, id="no-private-name"),
    pytest.param(STRATEGY + "mine: {retries: 1, name: other}\n", False, id="no-name-key"),
    pytest.param(HEAD + "strategies: [transient]\n", False, id="strategies-list"),
]


@pytest.mark.parametrize(("source", "valid"), SHORTHANDS)
def test_schema_and_loader_agree_on_shorthands(tmp_path: Path, source: str, valid: bool) -> None:
    """Each shorthand form the model's validators read: the schema accepts it exactly when the loader does."""
    path = tmp_path / "scenario.yaml"
    path.write_text(source, encoding="utf-8")
    (loaded,) = load_file(path)
    assert isinstance(loaded, Scenario) is valid, str(loaded)
    (doc,) = documents(source)
    assert (problems(SCENARIO, doc) == []) is valid, problems(SCENARIO, doc)


STRATEGIES_FILE = """\
# yaml-language-server: $schema=./strategies.schema.json
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
  fixed:
  stubborn: {retries: 10, retry_delay_seconds: [1, 2, 3], description: ten tries}
"""


@pytest.mark.parametrize(
    ("source", "valid"),
    [
        pytest.param(STRATEGIES_FILE, True, id="example"),
        pytest.param("strategies: {}\n", False, id="empty"),
        pytest.param("strategies: {mine: }\n", False, id="unknown-preset"),
        pytest.param("strategies: {mine: {retries: 1, expect: {flow: Completed}}}\n", False, id="expect"),
        pytest.param("strategies: {mine: {retrys: 1}}\n", False, id="misspelt-option"),
        pytest.param("strategy: {transient: }\n", False, id="misspelt-top-key"),
        pytest.param("strategies: {transient: , mine: {timeout_seconds: 0}}\n", False, id="timeout-zero"),
    ],
)
def test_strategies_file_schema_agrees_with_the_loader(tmp_path: Path, source: str, valid: bool) -> None:
    """A strategies file for --strategies-file: the schema accepts it exactly when load_policies does."""
    path = tmp_path / "strategies.yaml"
    path.write_text(source, encoding="utf-8")
    try:
        load_policies(path)
        loaded = True
    except ValueError:
        loaded = False
    assert loaded is valid
    (doc,) = documents(source)
    assert (problems(STRATEGIES, doc) == []) is valid, problems(STRATEGIES, doc)


def _enums(node: Any) -> list[list[Any]]:
    if isinstance(node, dict):
        return ([node["enum"]] if "enum" in node else []) + [e for v in node.values() for e in _enums(v)]
    if isinstance(node, list):
        return [e for v in node for e in _enums(v)]
    return []


def test_schema_lists_the_language_s_names_and_describes_fields() -> None:
    """Faults, malformed bodies, states, types, invariants as enums; presets as keys; methods in the pattern."""
    schema = scenario_schema()
    enums = [sorted(map(str, e)) for e in _enums(schema)]
    for names in (FAULTS, MALFORMED, STATE_NAMES, STATE_TYPES, INVARIANTS):
        assert any(set(names) <= set(e) for e in enums), names
    assert set(schema["properties"]["strategies"]["properties"]) == set(PRESETS)
    assert set(strategies_schema()["properties"]["strategies"]["properties"]) == set(PRESETS)
    pattern = schema["$defs"]["Endpoint"]["properties"]["request"]["pattern"]
    assert all(method in pattern for method in METHODS)
    step = schema["$defs"]["Step"]["properties"]
    assert all(step[key].get("description") for key in ("fault", "malformed", "latency", "times", "json"))


def test_schema_refuses_unknown_keys_everywhere_and_leaks_no_internals() -> None:
    """Every object of the schema forbids unknown keys; the loader's own `__name__` and `policy` never show."""
    for schema in (scenario_schema(), strategies_schema()):
        text = json.dumps(schema)
        assert "__name__" not in text and '"policy"' not in text and "StrategyCase" not in text
        for name, definition in schema["$defs"].items():
            assert definition.get("additionalProperties") is False, name
        assert schema["additionalProperties"] is False
    assert problems(SCENARIO, {"name": "n", "flow": "github_stars", "expect": {"fualt": 1}})
    assert problems(
        SCENARIO,
        {"name": "n", "flow": "github_stars", "endpoints": [{"request": "GET https://h", "fualt": 1, "responses": []}]},
    )


def test_cli_writes_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`harness schema --out FILE` writes the scenario schema; `--strategies` prints the strategies file's."""
    out = tmp_path / "editor" / "scenario.schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == scenario_schema()
    capsys.readouterr()
    assert main(["schema", "--strategies"]) == 0
    assert json.loads(capsys.readouterr().out) == strategies_schema()
