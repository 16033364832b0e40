"""From YAML and model errors to problems: ``path:line: field: message``, with the fix.

One pipeline for every file the harness reads (scenario files and strategies
files alike): the file's bytes (``read_text``), its YAML (``yaml_problem``),
the model's validation errors (``validation_problems``) and keys written twice
(``duplicate_keys``) all become ``Problem`` objects that name the file, the
line, the field in the document's own terms, and what to write instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from harness._errors import Problem, ScenarioError
from harness.scenario._yaml import LineDict, LineList

M = TypeVar("M", bound=BaseModel)
MAX_BYTES = 1 << 20
SUFFIXES = (".yaml", ".yml")


def snippet(text: str | None, line: int | None) -> str:
    """The offending line with one line of context each side."""
    if not text or not line:
        return ""
    lines = text.splitlines()
    out = []
    for n in range(max(1, line - 1), min(len(lines), line + 1) + 1):
        mark = ">" if n == line else " "
        out.append(f"  {mark} {n:4} | {lines[n - 1]}")
    return "\n".join(out)


def field_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_at(raw: Any, loc: Sequence[str | int]) -> int | None:
    """The line of the deepest part of ``loc`` found in the raw YAML data."""
    line = getattr(raw, "line", None)
    current = raw
    for part in loc:
        if isinstance(current, LineDict) and part in current:
            line = current.key_lines[part]
            current = current[part]
        elif isinstance(current, LineList) and isinstance(part, int) and 0 <= part < len(current):
            line = current.item_lines[part]
            current = current[part]
        elif isinstance(current, LineDict | LineList):
            continue  # a validator's own name in pydantic's loc: skip it
        else:
            break
    return line


_INTERNAL_LOC = re.compile(r"\[key\]|(function-\w+|tuple|list|dict|union|nullable|default)\[.*\]|[A-Z]\w*")


def _clean_loc(raw: Any, loc: Sequence[str | int]) -> list[str | int]:
    """Pydantic's error location in the scenario's own terms.

    Pydantic adds parts of its own (``function-after[...]``, a union member's
    class name, ``[key]``); a part is dropped when it is not a key of the YAML
    at that point and looks like one of those.
    """
    out: list[str | int] = []
    current = raw
    for part in loc:
        found = (isinstance(current, LineDict) and part in current) or (
            isinstance(current, LineList) and isinstance(part, int) and 0 <= part < len(current)
        )
        if found:
            current = current[part]
        elif isinstance(part, str) and _INTERNAL_LOC.fullmatch(part):
            continue
        elif part == "policy" and len(out) == 2 and out[0] == "strategies":
            continue  # a strategy's options sit beside its `expect` in the YAML
        else:
            current = None
        out.append(part)
    return out


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc``, if there is one."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {info.alias or name: info for name, info in tp.model_fields.items()}
            if part not in fields:
                return None
            tp = fields[part].annotation
        elif get_origin(tp) is tuple and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def keys_of(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


_STEP = "a response step such as {status: 200, json: ...}, {fault: read_timeout} or {malformed: html}"
_TASK_RUN = "a state name such as 'Completed' or a mapping {state, type, message, retries, runs}"
# What a field must hold, by its name (or its parent's, for mapping values and list items).
_EXPECTED: dict[str, str] = {
    "name": "a non-empty string",
    "description": "a string",
    "flow": "a built-in flow name (cfpb_etl, github_stars) or 'package.module:flow'",
    "parameters": "a mapping of the flow's parameter names to values",
    "seed": "a whole number",
    "xfail": "a string: the reason the scenario is expected to fail",
    "prefect": "a version specifier such as '>=3.8': the Prefect versions the expectations hold for",
    "endpoints": "a list of endpoints, each a mapping with `request: METHOD URL` and `responses:` or `chaos:`",
    "endpoints[]": "an endpoint: a mapping with `request: METHOD URL` and `responses:` or `chaos:`",
    "responses": "a list of response steps",
    "responses[]": _STEP,
    "faults": "a non-empty list of response steps",
    "faults[]": _STEP,
    "otherwise": _STEP,
    "status": "an HTTP status code from 100 to 599",
    "headers": "a mapping of header names to string values",
    "headers.*": "a string header value",
    "text": "a string body",
    "body_base64": "a base64 string",
    "times": "a whole number >= 1 (the number of calls this step serves)",
    "chaos": "a mapping {rate, faults, otherwise}",
    "rate": "a probability from 0 to 1",
    "expect": "a mapping of expectations (flow, result, tasks, calls, sqlite, virtual_time, hooks, invariants)",
    "expect.flow": "a state name such as 'Completed' or a mapping {state, type, message}",
    "tasks": "a mapping of task names to their expected runs",
    "tasks.*": _TASK_RUN + ", or a list of those (one per run, in call order)",
    "tasks.*[]": _TASK_RUN,
    "retries": "a whole number >= 0 (retries spent = run_count - 1)",
    "runs": "a whole number >= 0 (task runs of this name that started; 0 = never ran)",
    "state": "a state name such as 'Completed'",
    "type": "a state type such as 'FAILED'",
    "message": "a regular expression",
    "calls": "a mapping of 'METHOD URL' to call counts",
    "calls.*": "a whole number of calls >= 0",
    "sqlite": "a mapping {path, query, equals}",
    "path": "a string path, relative to the scenario's working directory",
    "query": "a string SQL query",
    "equals": "the rows the query returns, e.g. [[3]]",
    "virtual_time": "a mapping {max: seconds, min: seconds}",
    "max": "a number of seconds >= 0",
    "min": "a number of seconds >= 0",
    "invariants": "a list of invariants",
    "hooks": "a mapping {flow: {on_failure: N, ...}, tasks: {NAME: {on_completion: N, ...}}}",
    "hooks.flow": "a mapping of flow hook kinds (on_completion, on_failure, on_cancellation, on_crashed, "
    "on_running) to how many times they ran",
    "hooks.tasks": "a mapping of task names to {on_completion, on_failure, on_running: times they ran}",
    "on_completion": "a whole number of times >= 0",
    "on_failure": "a whole number of times >= 0",
    "on_cancellation": "a whole number of times >= 0",
    "on_crashed": "a whole number of times >= 0",
    "on_running": "a whole number of times >= 0",
    "strategies": "a mapping of strategy names to their options (retries, ...), or to nothing for a preset",
}


def _expected(loc: Sequence[str | int]) -> str | None:
    names = [p for p in loc if isinstance(p, str)]
    if not names:
        return None
    last = loc[-1]
    if isinstance(last, int):
        return _EXPECTED.get(f"{names[-1]}[]") or _EXPECTED.get(f"{names[-2]}.*[]" if len(names) > 1 else "")
    if len(names) > 1 and f"{names[-2]}.*" in _EXPECTED and names[-2] in ("headers", "tasks", "calls"):
        return _EXPECTED[f"{names[-2]}.*"]
    if "hooks" in names and last in ("flow", "tasks") and names[-2] == "hooks":
        return _EXPECTED[f"hooks.{last}"]
    if len(names) > 2 and names[-3:-1] == ["hooks", "tasks"]:  # a task's hook counts: not a task run
        return "a mapping {on_completion, on_failure, on_running: times they ran}"
    if len(loc) == 2 and loc[0] == "expect" and last == "flow":
        return _EXPECTED["expect.flow"]
    if loc[0] == "strategies" and "expect" not in names:
        return _STRATEGY_EXPECTED.get(str(last))
    return _EXPECTED.get(str(last))


_STRATEGY_EXPECTED = {
    "retries": "a whole number of retries >= 0",
    "retry_delay_seconds": "seconds, a list of seconds, or {exponential: {base, factor, cap}}",
    "retry_jitter_factor": "a number >= 0",
    "retry_condition": "'transient' or 'module:function'",
    "honour_retry_after": "true or false",
    "timeout_seconds": "a number of seconds > 0",
    "flow_retries": "a whole number >= 0",
    "flow_retry_delay_seconds": "a number of seconds >= 0",
    "tasks": "a task name or glob such as 'get_*'",
}


def closest(value: str, choices: Sequence[str]) -> str | None:
    """The choice ``value`` most probably misspells (case aside), if one is close enough."""
    folded = {c.casefold(): c for c in choices}
    close = difflib.get_close_matches(value.casefold(), list(folded), n=1)
    return folded[close[0]] if close else None


def did_you_mean(value: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, else the list of choices."""
    close = closest(value, choices)
    if close is not None and close != value:
        return f"; did you mean {close!r}?"
    return f"; expected one of: {', '.join(choices)}"


def type_name(value: Any) -> str:
    """A value's type in YAML's words: mapping, list, str, int, float, bool, null."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1] if text[-1] in ')]}' else ''}"


def _got(value: Any, wants_string: bool = False) -> str:
    got = f"got {short_repr(value)} ({type_name(value)})"
    if wants_string and isinstance(value, int | float | bool):
        got += f"; quote it: '{str(value).lower() if isinstance(value, bool) else value}'"
    return got


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _problem_from_error(
    err: Mapping[str, Any],
    root: type[BaseModel],
    raw: Any,
    path: Path,
    text: str,
    missing: set[tuple[str | int, ...]],
) -> Problem | None:
    is_key = "[key]" in err["loc"]
    loc = _clean_loc(raw, err["loc"])
    line = line_at(raw, loc)
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        key = loc[-1]
        model = _model_at(root, loc[:-1])
        choices = keys_of(model) if model else []
        if not isinstance(key, str):
            message = f"unknown key {key!r} ({type_name(key)}); expected one of: {', '.join(choices)}"
        else:
            message = f"unknown key {key!r}" + (did_you_mean(key, choices) if choices else "")
    elif kind == "missing":
        if tuple(loc) in missing:
            return None  # a misspelt key already says "did you mean" this one
        line = line_at(raw, loc[:-1])
        hint = _expected(loc)
        message = f"required key {loc[-1]!r} is missing" + (f"; add `{loc[-1]}:` with {hint}" if hint else "")
    elif is_key and kind not in ("value_error", "assertion_error"):
        message = f"key {value!r} ({type_name(value)}) must be a string; quote it: '{value}'"
    elif kind in ("value_error", "assertion_error"):
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    elif kind in _BOUNDS and _expected(loc) is None:
        bound = next(iter(err.get("ctx", {}).values()), "?")
        message = f"must be {_BOUNDS[kind]} {bound}, {_got(value)}"
    else:
        hint = _expected(loc)
        if hint is not None:
            message = f"expected {hint}, {_got(value, kind == 'string_type')}"
        else:
            message = re.sub(r" or instance of \w+", "", err["msg"]) + f"; {_got(value, kind == 'string_type')}"
    return Problem(path, line, field_path(as_written(raw, loc)), message, snippet=snippet(text, line))


def duplicate_keys(raw: Any, path: Path, text: str) -> list[Problem]:
    """Keys written twice in one mapping, anywhere in the document."""
    problems = []
    seen: set[int] = set()
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(raw, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:  # an alias: already looked at
            continue
        seen.add(id(node))
        if isinstance(node, LineDict):
            for key, line, first in node.duplicates:
                problems.append(
                    Problem(
                        path,
                        line,
                        field_path(as_written(raw, (*loc, key))),
                        f"duplicate key {key!r} (first on line {first}); keep one",
                        snippet=snippet(text, line),
                    )
                )
            stack.extend((v, (*loc, k)) for k, v in node.items())
        elif isinstance(node, LineList):
            stack.extend((v, (*loc, i)) for i, v in enumerate(node))
    return sorted(problems, key=lambda p: p.line or 0)


def read_text(path: Path) -> str:
    """Read a scenario file, refusing files over 1 MiB and bytes that are not UTF-8."""
    with path.open("rb") as f:
        data = f.read(MAX_BYTES + 1)  # never more, whatever the file claims to be
    if len(data) > MAX_BYTES:
        size = max(path.stat().st_size, len(data))
        raise ScenarioError(
            [
                Problem(
                    path,
                    None,
                    "",
                    f"file is {size} bytes; scenario files are limited to 1 MiB ({MAX_BYTES} bytes): split it",
                    offset=MAX_BYTES,
                )
            ]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ScenarioError(
            [
                Problem(
                    path,
                    None,
                    "",
                    f"file is not UTF-8: {exc.reason} {data[exc.start : exc.end]!r} on line {line}; save it as UTF-8",
                    offset=exc.start,
                )
            ]
        ) from None


def yaml_problem(exc: yaml.YAMLError, path: Path, text: str) -> Problem:
    """A PyYAML error as a located problem, in words a scenario author can act on."""
    if isinstance(exc, yaml.reader.ReaderError):
        pos = int(exc.position or 0)
        at = text.count("\n", 0, pos) + 1
        char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        return Problem(
            path,
            at,
            "",
            f"invalid YAML: character {char!r} (U+{ord(char):04X}) is not allowed in a YAML file; "
            "remove it, or write it as an escape inside double quotes",
            offset=len(text[:pos].encode()),
            snippet=snippet(text, at),
        )
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    if mark is not None and text[mark.index : mark.index + 1] == "\t":
        before = text[text.rfind("\n", 0, mark.index) + 1 : mark.index]
        message = (
            "tab used for indentation; YAML indents with spaces"
            if not before.strip()
            else "tab where YAML expects a space; replace it with spaces"
        )
        return Problem(path, line, "", message, snippet=snippet(text, line))
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    return Problem(path, line, "", message, snippet=snippet(text, line))


def validation_problems(exc: ValidationError, root: type[BaseModel], raw: Any, path: Path, text: str) -> list[Problem]:
    """Pydantic's errors for ``raw`` validated as ``root``, as problems sorted by line."""
    located = [(tuple(_clean_loc(raw, e["loc"])), e) for e in exc.errors()]
    # A misspelt key that names a missing one ("fault" for "faults") is one problem, not two.
    missing = {loc for loc, e in located if e["type"] == "missing"}
    covered = set()
    for loc, e in located:
        if e["type"] == "extra_forbidden" and isinstance(loc[-1], str):
            model = _model_at(root, loc[:-1])
            close = closest(loc[-1], keys_of(model)) if model else None
            if close is not None and (*loc[:-1], close) in missing:
                covered.add((*loc[:-1], close))
    # A tuple whose items failed also reports itself too short: noise.
    failed = [loc for loc, e in located if e["type"] != "too_short"]
    problems = [
        p
        for loc, e in located
        if not (e["type"] == "too_short" and any(f[: len(loc)] == loc and len(f) > len(loc) for f in failed))
        and (p := _problem_from_error(e, root, raw, path, text, covered)) is not None
    ]
    problems.sort(key=lambda p: p.line or 0)
    return problems


def as_written(raw: Any, loc: Sequence[str | int]) -> list[str | int]:
    """``loc`` as the file wrote it: an index the model added (one mapping taken as a list of one, as a task's
    expectation may be written) is left out, so ``tasks.fetch.state`` reads as written, not ``fetch[0]``."""
    out: list[str | int] = []
    current = raw
    for part in loc:
        if isinstance(part, int) and isinstance(current, dict):
            continue  # the model's list of one, around a mapping written alone
        out.append(part)
        current = _child(current, part)
    return out


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def located(
    path: Path, text: str, raw: Any, loc: Sequence[str | int], message: str, line: int | None = None
) -> Problem:
    """A problem at the field ``loc`` of ``raw`` (or at ``line``), with its lines shown."""
    line = line or line_at(raw, loc) or getattr(raw, "line", None) or 1
    return Problem(path, line, field_path(as_written(raw, loc)), message, snippet=snippet(text, line))


def validated(root: type[M], raw: LineDict, path: Path, text: str) -> M:
    """``raw`` validated as ``root``; else ``ScenarioError`` with every problem located in the file."""
    duplicates = duplicate_keys(raw, path, text)
    if duplicates:
        raise ScenarioError(duplicates)
    for key in raw:
        if not isinstance(key, str):
            message = f"unknown key {key!r} ({type_name(key)}); expected one of: {', '.join(keys_of(root))}"
            line = raw.key_lines[key]
            raise ScenarioError([Problem(path, line, str(key), message, snippet=snippet(text, line))])
    try:
        return root.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(validation_problems(exc, root, raw, path, text)) from None
