"""Loading scenario and strategies files: YAML with source lines, validated into frozen models.

File-level problems (size, encoding, YAML syntax) raise ``ScenarioError`` for
the whole file; a semantic problem fails only its own document, which comes
back as a ``ScenarioError`` in place of its ``Scenario``. Every
``module:function`` a document names (its flow, retry conditions,
invariants) is resolved here, so a misspelt one is a problem at its line,
never a traceback at run time.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from harness._errors import Problem, ScenarioError, shown
from harness.scenario._yaml import LineDict, load_documents
from harness.scenario.kinds import READY_TARGETS
from harness.scenario.model import (
    API_FAULTS,
    CONNECT_FAULTS,
    FAULTS,
    NOT_ON_WIRE,
    UNSET,
    WIRE_FAULTS,
    FunctionStep,
    RaiseType,
    Scenario,
    ServerExpect,
)
from harness.scenario.problems import (
    MAX_BYTES,
    did_you_mean,
    line_at,
    located,
    read_text,
    short_repr,
    type_name,
    validated,
    yaml_problem,
)
from harness.scenario.resolve import resolve_exception, resolve_flow, resolve_function, resolve_target, tasks_of
from harness.scenario.strategy import Policy, StrategiesFile

SUFFIXES = (".yaml", ".yml")


def validate_document(raw: Any, path: Path, text: str, doc_line: int) -> Scenario:
    """Validate one parsed document into a ``Scenario`` or raise ``ScenarioError``."""
    if raw is None:
        message = "empty document (null); a scenario needs at least `name` and `flow`"
        raise ScenarioError([located(path, text, raw, (), message, doc_line)])
    if not isinstance(raw, LineDict):
        fix = (
            "; a file holds one scenario per document: separate them with '---', not '- '"
            if isinstance(raw, list)
            else "; start with `name:` and `flow:`"
        )
        message = f"a scenario document must be a mapping of keys, got {short_repr(raw)} ({type_name(raw)}){fix}"
        raise ScenarioError([located(path, text, raw, (), message, doc_line)])
    read_bodies(raw, path, text)
    scenario = validated(Scenario, raw, path, text)
    scenario._path = path
    scenario._line = raw.line
    scenario._lines = raw
    problems = [located(path, text, raw, loc, message, line) for loc, message, line in _semantic_problems(scenario)]
    if problems:
        raise ScenarioError(sorted(problems, key=lambda p: p.line or 0))
    return scenario


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"  # harness/fixtures: payloads usable by name
BODY_FILES = {"json_file": "json", "body_file": "text"}


def read_bodies(raw: LineDict, path: Path, text: str) -> None:
    """Each response step's ``json_file`` / ``body_file`` read into its ``json`` / ``text``, in place, so that a
    body from a file is validated as one written inline: relative to the scenario file's folder, else a fixture
    of ``harness/fixtures/`` by its name there (``cfpb/search_size10_debt_recovery.json``). A file that is
    missing, over 1 MiB, not UTF-8 or (``json_file``) not JSON is a problem at its key's line."""
    problems = []
    for i, endpoint in enumerate(raw.get("endpoints") or []):
        if not isinstance(endpoint, LineDict):
            continue
        places: list[tuple[tuple[str | int, ...], Any]] = [
            (("responses", j), step) for j, step in enumerate(endpoint.get("responses") or [])
        ]
        chaos = endpoint.get("chaos")
        if isinstance(chaos, LineDict):
            places += [(("chaos", "faults", j), step) for j, step in enumerate(chaos.get("faults") or [])]
            places.append((("chaos", "otherwise"), chaos.get("otherwise")))
        for where, step in places:
            if not isinstance(step, LineDict):
                continue
            for key, body in BODY_FILES.items():
                if key not in step:
                    continue
                loc = ("endpoints", i, *where, key)
                try:
                    value = _body_from(step[key], key, path.parent)
                except ValueError as exc:
                    problems.append(located(path, text, raw, loc, str(exc)))
                    continue
                if body in step:
                    both = f"a step has one body: `{key}` or `{body}`, not both"
                    problems.append(located(path, text, raw, loc, both))
                    continue
                step.key_lines[body] = step.key_lines[key]
                del step[key]
                step[body] = value
    if problems:
        raise ScenarioError(problems)


def _body_from(name: Any, key: str, near: Path) -> Any:
    import json

    if not isinstance(name, str) or not name:
        raise ValueError(f"`{key}` is a file's path, relative to the scenario file, got {short_repr(name)}")
    candidates = [near / name, FIXTURES / name]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        fixtures = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.json"))
        raise ValueError(
            f"no file {name!r} beside the scenario file ({shown(near) or '.'}) nor among the fixtures"
            + did_you_mean(name, fixtures)
        )
    data = found.read_bytes()[: MAX_BYTES + 1]
    if len(data) > MAX_BYTES:
        raise ValueError(f"{name!r} is over 1 MiB ({MAX_BYTES} bytes), the limit of a scenario's body")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name!r} is not UTF-8 text: give binary bodies as `body_base64`") from None
    if key == "body_file":
        return decoded
    try:
        return json.loads(decoded)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name!r} is not JSON ({exc}); serve it as text with `body_file`") from None


Found = tuple[tuple[str | int, ...], str, int | None]  # (field, message, line when not the field's own)


def _semantic_problems(scenario: Scenario) -> Iterable[Found]:
    """What the model alone cannot judge: endpoints against calls, and every name resolved."""
    declared = [e.request.text for e in scenario.endpoints]
    seen: set[str] = set()
    for i, name in enumerate(declared):
        if name in seen:
            yield ("endpoints", i, "request"), f"endpoint {name!r} is declared twice", None
        seen.add(name)
    targets = [f.key for f in scenario.functions]
    for key in scenario.expect.calls:
        if key not in declared and key not in targets:
            hint = did_you_mean(key, declared + targets) if declared or targets else " (none declared)"
            noun = "endpoint or function target" if targets else "endpoint"
            yield ("expect", "calls", key), f"{key!r} is not a declared {noun}{hint}", None
    yield from _crash_problems(scenario, declared)
    yield from _api_problems(scenario)
    yield from _slots_problems(scenario)
    yield from _function_problems(scenario)
    yield from _weak_variants(scenario)
    yield from _transport_problems(scenario)
    try:
        flow = resolve_flow(scenario.flow, base=scenario.path.parent)
    except ImportError as exc:
        yield ("flow",), str(exc), None
        return
    yield from _parameter_problems(scenario, flow)
    known = {task.name for task in tasks_of(flow)}
    if known:
        hooked = scenario.expect.hooks.tasks if scenario.expect.hooks is not None else {}
        named: list[tuple[tuple[str | int, ...], str]] = [(("expect", "tasks", n), n) for n in scenario.expect.tasks]
        named += [(("expect", "hooks", "tasks", n), n) for n in hooked]
        named += [(("expect", "server", "tasks", n), n) for n in (scenario.expect.server or ServerExpect()).tasks]
        named += [
            (("expect", "flow_runs", i, "tasks", n), n)
            for i, r in enumerate(scenario.expect.flow_runs)
            for n in r.tasks
        ]
        for key, what in (("crash", scenario.crash), ("cancel", scenario.cancel)):
            if what is not None and what.at.task is not None:
                named.append(((key, "at", what.at.point), what.at.task))
        for where, name in named:
            if name not in known:
                hint = did_you_mean(name, sorted(known))
                yield where, f"flow {scenario.flow!r} defines no task {name!r}{hint}", None


def _crash_problems(scenario: Scenario, declared: list[str]) -> Iterable[Found]:
    """A crash after a call no endpoint declares, and ``flow_runs`` of another length than the runs made."""
    for key, what in (("crash", scenario.crash), ("cancel", scenario.cancel)):
        at = what.at if what is not None else None
        if at is not None and at.request is not None and at.request not in declared:
            hint = did_you_mean(at.request, declared) if declared else " (none declared)"
            yield (key, "at", "after_call"), f"{at.request!r} is not a declared endpoint{hint}", None
    if scenario.crash is not None and scenario.cancel is not None and scenario.crash.at == scenario.cancel.at:
        yield (
            ("cancel", "at"),
            f"`cancel:` and `crash:` are both at {scenario.crash.at}: the process cannot both die and be "
            "cancelled there; move one of them",
            None,
        )
    if scenario.cancel is not None and scenario.cancel.how == "runner":
        # Prefect's runner starts the flow's process: the harness neither kills it nor moves its leases
        for key in ("crash", "concurrency_limits"):
            if getattr(scenario, key) is not None:
                yield (
                    (key,),
                    f"`{key}:` cannot go with `cancel: {{how: runner}}`, whose flow runs in a process Prefect's "
                    "runner starts; use `how: api_only`, or another scenario",
                    None,
                )
        expects: list[tuple[tuple[str | int, ...], Any]] = [(("expect",), scenario.expect)]
        expects += [(("strategies", n, "expect"), c.expect) for n, c in scenario.strategies.items()]
        served_run: list[tuple[tuple[str | int, ...], Any]] = []
        for under, expect in expects:
            served_run += [(under, expect)] if scenario.runs == 1 else []
            served_run += [((*under, "flow_runs", 0), expect.flow_runs[0])] if expect.flow_runs else []
        for where, expect in served_run:
            if expect.result is not UNSET:
                yield (
                    (*where, "result"),
                    "a run served by Prefect's runner returns to the runner, not to the harness: it has no "
                    "result to compare (`cancel: {how: runner}`)",
                    None,
                )
    if scenario.rerun_after and scenario.runs == 1:
        yield ("rerun_after",), "`rerun_after` is the time between runs: add `reruns` (or `crash:`)", None
    runs = scenario.expect.flow_runs
    if runs and len(runs) != scenario.runs:
        yield (
            ("expect", "flow_runs"),
            f"the scenario makes {scenario.runs} flow run{'s' if scenario.runs > 1 else ''} (the first, then "
            f"`reruns`), and `flow_runs` lists {len(runs)}: give one entry per flow run",
            None,
        )


def _api_problems(scenario: Scenario) -> Iterable[Found]:
    """Steps only Prefect's API can serve (``pass``, ``lost_answer``) on an endpoint, wire faults on Prefect's API
    (its client is httpx, answered in-process), and a route declared twice."""
    for where, step in scenario.steps():
        if step.pass_:
            yield (
                (*where, "pass"),
                "`pass` lets a request through to Prefect's API: only `prefect_api` steps have it",
                None,
            )
        if step.fault in API_FAULTS:
            yield (
                (*where, "fault"),
                f"fault {step.fault!r} is applied by Prefect's server: only `prefect_api` has it",
                None,
            )
    for where, step in scenario.steps("prefect_api"):
        if step.fault in WIRE_FAULTS:
            yield (
                (*where, "fault"),
                f"fault {step.fault!r} exists only on a real connection; Prefect's client is httpx, answered "
                f"in-process: use one of {', '.join(FAULTS + API_FAULTS)}",
                None,
            )
    seen: set[str] = set()
    for i, route in enumerate(e.request.text for e in scenario.prefect_api):
        if route in seen:
            yield ("prefect_api", i, "request"), f"route {route!r} is declared twice", None
        seen.add(route)


def _slots_problems(scenario: Scenario) -> Iterable[Found]:
    """``expect.slots`` naming a limit the scenario does not declare."""
    limits = scenario.concurrency_limits.names() if scenario.concurrency_limits is not None else []
    expects = [((), scenario.expect)] + [(("strategies", n), c.expect) for n, c in scenario.strategies.items()]
    declared = scenario.concurrency_limits
    sizes = {**declared.tag, **declared.global_} if declared is not None else {}
    for where, expect in expects:
        for name, want in expect.slots.items():
            if name not in limits:
                hint = did_you_mean(name, limits) if limits else " (add it under `concurrency_limits`)"
                yield (*where, "expect", "slots", name), f"{name!r} is not a declared concurrency limit{hint}", None
            elif want.held_after is not None and want.held_after > sizes[name]:
                yield (
                    (*where, "expect", "slots", name, "held_after"),
                    f"limit {name!r} has {sizes[name]} slot{'s' if sizes[name] > 1 else ''}: it cannot hold "
                    f"{want.held_after}",
                    None,
                )


def _weak_variants(scenario: Scenario) -> Iterable[Found]:
    """A strategy's ``expect`` replaces the scenario's: it must state at least what the scenario's states."""
    base = scenario.expect.essentials()
    for name, case in scenario.strategies.items():
        stated = set(case.expect.essentials())
        lacking = [key for key in base if key not in stated and not (key == "flow.type" and "flow.state" in stated)]
        if lacking:
            where: tuple[str | int, ...] = (
                ("strategies", name, "expect")
                if "expect" in _raw_case(scenario, name)
                else (
                    "strategies",
                    name,
                )
            )
            yield (
                where,
                f"strategy {name!r} checks less than the scenario's own expect, which it replaces: "
                f"state {', '.join(lacking)} under this strategy too",
                None,
            )


def _transport_problems(scenario: Scenario) -> Iterable[Found]:
    """Faults the scenario's transport cannot serve, and (on the wire) connect-phase faults two endpoints could claim.

    Without ``transport: wire`` httpx meets connect-phase faults per request
    (respx); another client's connection to such a host meets the first
    endpoint's, as the README says.
    """
    wire = scenario.transport == "wire"
    for where, step in scenario.steps():
        if step.fault in WIRE_FAULTS and not wire:
            yield (
                (*where, "fault"),
                f"fault {step.fault!r} exists only on a real connection: add `transport: wire` to the scenario",
                None,
            )
        if step.fault in NOT_ON_WIRE and wire:
            yield (
                (*where, "fault"),
                f"fault {step.fault!r} is the client's own pool, which no connection can exhaust: "
                "it exists only with `transport: respx`",
                None,
            )
    claimants: dict[str, list[int]] = {}
    for i, e in enumerate(scenario.endpoints if wire else ()):
        if any(step.fault in CONNECT_FAULTS for where, step in scenario.steps() if where[1] == i):
            claimants.setdefault(urlsplit(e.request.url).hostname or "", []).append(i)
    for host, indexes in claimants.items():
        for i in indexes[1:]:
            yield (
                ("endpoints", i, "request"),
                f"endpoints {indexes[0]} and {i} of host {host!r} both declare a connect-phase fault "
                f"({', '.join(CONNECT_FAULTS)}): on the wire it is decided per host, before any request names its "
                "endpoint; declare it on one of them",
                None,
            )


def _raw_case(scenario: Scenario, name: str) -> Any:
    raw = scenario._lines.get("strategies", {}).get(name) if scenario._lines is not None else None
    return raw if isinstance(raw, dict) else {}


def _function_problems(scenario: Scenario) -> Iterable[Found]:
    """Invariants, retry conditions, function targets and exceptions named ``module:...`` that do not import."""
    near = scenario.path.parent
    declared: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    resolved: dict[str, Any] = {}  # a callable target -> the function it names
    for i, target in enumerate(scenario.functions):
        filters = tuple(sorted(target.where.items()))
        if (target.call, filters) in declared:
            yield (
                ("functions", i, "call"),
                f"{target.call} is declared twice with the same `where` (functions[{declared[target.call, filters]}]): "
                "the first would serve every call; merge their steps",
                None,
            )
        declared.setdefault((target.call, filters), i)
        if target.call not in READY_TARGETS:
            try:
                _, _, fn = resolve_target(target.call, near)
            except ImportError as exc:
                yield ("functions", i, "call"), str(exc), None
            else:
                same = next((c for c, f in resolved.items() if f is fn and c != target.call), None)
                if same is not None:
                    yield (
                        ("functions", i, "call"),
                        f"{target.call} is the same function as {same}: declare it once",
                        None,
                    )
                resolved.setdefault(target.call, fn)
        steps: list[tuple[tuple[str | int, ...], FunctionStep]] = [
            (("responses", j), s) for j, s in enumerate(target.responses)
        ]
        if target.chaos is not None:
            steps += [(("chaos", "faults", j), s) for j, s in enumerate(target.chaos.faults)]
            steps.append((("chaos", "otherwise"), target.chaos.otherwise))
        for at, step in steps:
            if isinstance(step.raise_, RaiseType):
                try:
                    cls = resolve_exception(step.raise_.type, near)
                except ImportError as exc:
                    yield ("functions", i, *at, "raise", "type"), str(exc), None
                    continue
                try:
                    cls(step.raise_.message) if step.raise_.message else cls()
                except Exception as exc:  # noqa: BLE001 (the user's class: any failure to build it is theirs)
                    yield (
                        ("functions", i, *at, "raise", "type"),
                        f"{step.raise_.type} cannot be raised with one message ({type(exc).__name__}: {exc}): "
                        "raise a subclass of your own that builds from a message",
                        None,
                    )
    expects = [((), scenario.expect)] + [(("strategies", n), c.expect) for n, c in scenario.strategies.items()]
    for where, expect in expects:
        for i, inv in enumerate(expect.invariants):
            if ":" in inv.kind:
                try:
                    resolve_function(inv.kind, "invariant", near)
                except ImportError as exc:
                    yield (*where, "expect", "invariants", i), str(exc), None
    for name, case in scenario.strategies.items():
        condition = case.policy.retry_condition
        if condition is not None and ":" in condition:
            try:
                resolve_function(condition, "retry condition", near)
            except ImportError as exc:
                yield ("strategies", name, "retry_condition"), str(exc), None


def _parameter_problems(scenario: Scenario, flow: Any) -> Iterable[Found]:
    signature = inspect.signature(flow.fn)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    params = [n for n, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for key in scenario.parameters:
        if key not in params and not accepts_any:
            hint = did_you_mean(key, params) if params else " (it takes none)"
            yield ("parameters", key), f"flow {scenario.flow!r} has no parameter {key!r}{hint}", None
    for name, p in signature.parameters.items():
        required = p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        if required and name not in scenario.parameters:
            where = ("parameters",) if "parameters" in scenario._lines else ("flow",)
            message = f"flow {scenario.flow!r} needs parameter {name!r}; add it under `parameters:`"
            yield ("parameters", name), message, line_at(scenario._lines, where)


def _documents(path: Path) -> tuple[str, list[tuple[int, Any]]]:
    """A file's text and its parsed documents; ``ScenarioError`` when it cannot be read as YAML."""
    text = read_text(path)
    try:
        return text, load_documents(text, str(path))
    except yaml.YAMLError as exc:
        raise ScenarioError([yaml_problem(exc, path, text)]) from None


def load_policies(path: str | Path) -> dict[str, Policy]:
    """Named strategies from a YAML file: ``strategies: {name: {retries: 3, ...}, preset_name: }``.

    Raises ``ScenarioError`` (a ``ValueError``) naming the file, line and field
    of each thing wrong, through the same pipeline as scenario files.
    """
    path = Path(path)
    text, docs = _documents(path)
    raw: Any = docs[0][1] if len(docs) == 1 else None
    if not isinstance(raw, LineDict) or "strategies" not in raw:
        message = (
            "a strategies file is one YAML document with a `strategies:` mapping of named strategies, "
            "e.g. `strategies: {patient: {retries: 5, retry_delay_seconds: 10}}`"
        )
        raise ScenarioError([located(path, text, raw, (), message, docs[0][0] if docs else 1)])
    strategies = validated(StrategiesFile, raw, path, text).strategies
    problems = []
    for name, policy in strategies.items():
        if policy.retry_condition is not None and ":" in policy.retry_condition:
            try:
                resolve_function(policy.retry_condition, "retry condition", path.parent)
            except ImportError as exc:
                problems.append(located(path, text, raw, ("strategies", name, "retry_condition"), str(exc)))
    if problems:
        raise ScenarioError(problems)
    return strategies


def load_file(path: str | Path) -> list[Scenario | ScenarioError]:
    """Every document of one file: a ``Scenario``, or the ``ScenarioError`` it raised.

    Raises ``ScenarioError`` when the file as a whole cannot be read.
    """
    path = Path(path)
    text, docs = _documents(path)
    if not docs:
        raise ScenarioError([Problem(path, 1, "", "file holds no scenario (it is empty)")])
    out: list[Scenario | ScenarioError] = []
    for doc_line, raw in docs:
        try:
            out.append(validate_document(raw, path, text, doc_line))
        except ScenarioError as exc:
            out.append(exc)
    return out


def scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    """The scenario files under ``paths`` (files or folders), sorted."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file()))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return files


def load_paths(paths: Iterable[str | Path]) -> list[Scenario | ScenarioError]:
    """Load every scenario under ``paths``; duplicate names become errors."""
    out: list[Scenario | ScenarioError] = []
    seen: dict[str, Scenario] = {}
    for file in scenario_files(paths):
        try:
            items = load_file(file)
        except ScenarioError as exc:
            out.append(exc)
            continue
        for item in items:
            if isinstance(item, Scenario):
                first = seen.get(item.name)
                if first is not None:
                    line = item.line_of("name")
                    item = ScenarioError(
                        [
                            Problem(
                                item.path,
                                line,
                                "name",
                                f"duplicate scenario name {item.name!r} (first at {first.path}:"
                                f"{first.line_of('name')}); names are unique in a run: rename one",
                            )
                        ]
                    )
                else:
                    seen[item.name] = item
            out.append(item)
    return out
