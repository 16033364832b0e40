"""Loading scenario files: YAML with source lines, validated into ``Scenario``.

File-level problems (size, encoding, YAML syntax) raise ``ScenarioError`` for
the whole file; a semantic problem fails only its own document, which comes
back as a ``ScenarioError`` in place of its ``Scenario``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness._errors import Problem, ScenarioError
from harness._yaml import LineDict, LineList, load_documents
from harness.model import Scenario, did_you_mean

MAX_BYTES = 1 << 20
SUFFIXES = (".yaml", ".yml")
_FIELD_NAMES: tuple[str, ...] = ()


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


def _all_field_names() -> tuple[str, ...]:
    global _FIELD_NAMES
    if not _FIELD_NAMES:
        from pydantic import BaseModel

        from harness import model

        names: set[str] = set()
        for obj in vars(model).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel):
                for fname, info in obj.model_fields.items():
                    names.add(info.alias or fname)
        names |= {"uniform", "lognormal", "median", "sigma", "bounded_calls"}
        _FIELD_NAMES = tuple(sorted(names))
    return _FIELD_NAMES


def _problem_from_error(err: dict[str, Any], raw: Any, path: Path, text: str) -> Problem:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    line = line_at(raw, loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        message = f"unknown key {key!r}{did_you_mean(key, _all_field_names())}"
    elif kind == "missing":
        message = f"required key {loc[-1]!r} is missing"
        line = line_at(raw, loc[:-1])
    else:
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if kind not in ("value_error", "assertion_error"):
            value = err.get("input")
            message += f"; got {value!r} ({type(value).__name__})"
    return Problem(path, line, field_path(loc), message, snippet=snippet(text, line))


def validate_document(raw: Any, path: Path, text: str, doc_line: int) -> Scenario:
    """Validate one parsed document into a ``Scenario`` or raise ``ScenarioError``."""
    if raw is None:
        raise ScenarioError([Problem(path, doc_line, "", "empty document; a scenario needs at least `name` and `flow`")])
    if not isinstance(raw, LineDict):
        raise ScenarioError([Problem(
            path, doc_line, "",
            f"a scenario document must be a mapping of keys, got {type(raw).__name__}",
            snippet=snippet(text, doc_line),
        )])
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        line = raw.key_lines[bad_keys[0]]
        raise ScenarioError([Problem(path, line, str(bad_keys[0]), "keys must be strings", snippet=snippet(text, line))])
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem_from_error(e, raw, path, text) for e in exc.errors()]
        problems.sort(key=lambda p: p.line or 0)
        raise ScenarioError(problems) from None
    scenario._path = path
    scenario._line = raw.line
    scenario._lines = raw
    problems = list(_semantic_problems(scenario, raw, path, text))
    if problems:
        raise ScenarioError(problems)
    return scenario


def _semantic_problems(scenario: Scenario, raw: LineDict, path: Path, text: str) -> Iterable[Problem]:
    def problem(loc: tuple[str | int, ...], message: str) -> Problem:
        line = line_at(raw, loc)
        return Problem(path, line, field_path(loc), message, snippet=snippet(text, line))

    declared = [e.request.text for e in scenario.endpoints]
    seen: set[str] = set()
    for i, name in enumerate(declared):
        if name in seen:
            yield problem(("endpoints", i, "request"), f"endpoint {name!r} is declared twice")
        seen.add(name)
    for key in scenario.expect.calls:
        if key not in declared:
            yield problem(
                ("expect", "calls", key),
                f"{key!r} is not a declared endpoint{did_you_mean(key, declared) if declared else ' (none declared)'}",
            )
    try:
        flow = resolve_flow(scenario.flow, base=path.parent)
    except ImportError as exc:
        yield problem(("flow",), str(exc))
        return
    signature = inspect.signature(flow.fn)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    params = [n for n, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for key in scenario.parameters:
        if key not in params and not accepts_any:
            yield problem(
                ("parameters", key),
                f"flow {scenario.flow!r} has no parameter {key!r}{did_you_mean(key, params) if params else ' (it takes none)'}",
            )
    for name, p in signature.parameters.items():
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if name not in scenario.parameters:
                yield problem(("parameters",) if "parameters" in raw else ("flow",),
                              f"flow {scenario.flow!r} needs parameter {name!r}")
    known = module_task_names(flow)
    if known:
        for name in scenario.expect.tasks:
            if name not in known:
                yield problem(
                    ("expect", "tasks", name),
                    f"flow {scenario.flow!r} defines no task {name!r}{did_you_mean(name, sorted(known))}",
                )


def module_task_names(flow: Any) -> set[str]:
    """Names of the Prefect tasks defined in the module of ``flow``."""
    from prefect import Task

    module = sys.modules.get(flow.fn.__module__)
    return {obj.name for obj in vars(module).values() if isinstance(obj, Task)} if module else set()


def resolve_flow(spec: str, base: Path | None = None) -> Any:
    """Import a flow by built-in name or ``package.module:flow``."""
    from prefect import Flow

    from harness.flows import BUILTIN_FLOWS

    target = BUILTIN_FLOWS.get(spec, spec)
    if ":" not in target:
        raise ImportError(
            f"unknown flow {spec!r}: name a built-in ({', '.join(BUILTIN_FLOWS)}) or 'package.module:flow'"
            + did_you_mean(spec, list(BUILTIN_FLOWS)).replace("; expected one of", "; built-ins are")
        )
    module_name, _, attr = target.partition(":")
    added = None
    if base is not None and str(base.resolve()) not in sys.path:
        added = str(base.resolve())
        sys.path.append(added)  # a flow module beside its scenario file imports
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ImportError(f"cannot import flow module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    finally:
        if added is not None:
            sys.path.remove(added)
    obj = getattr(module, attr, None)
    if obj is None:
        names = [n for n, v in vars(module).items() if isinstance(v, Flow)]
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}{did_you_mean(attr, names) if names else ''}")
    if not isinstance(obj, Flow):
        raise ImportError(f"{target!r} is a {type(obj).__name__}, not a Prefect flow (decorate it with @flow)")
    return obj


def read_text(path: Path) -> str:
    """Read a scenario file, refusing files over 1 MiB and bytes that are not UTF-8."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ScenarioError([Problem(path, None, "", f"file is {size} bytes; scenario files are limited to 1 MiB ({MAX_BYTES} bytes)", offset=MAX_BYTES)])
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([Problem(path, None, "", f"file is not UTF-8: {exc.reason} (byte {data[exc.start:exc.end]!r})", offset=exc.start)]) from None


def load_file(path: str | Path) -> list[Scenario | ScenarioError]:
    """Every document of one file: a ``Scenario``, or the ``ScenarioError`` it raised.

    Raises ``ScenarioError`` when the file as a whole cannot be read.
    """
    path = Path(path)
    text = read_text(path)
    if "\t" in text:
        line = text[: text.index("\t")].count("\n") + 1
        # YAML forbids tabs for indentation; PyYAML's own message is obscure.
        stripped = text.splitlines()[line - 1]
        if stripped[: len(stripped) - len(stripped.lstrip())].count("\t"):
            raise ScenarioError([Problem(path, line, "", "tab used for indentation; YAML indents with spaces", snippet=snippet(text, line))])
    try:
        docs = load_documents(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = f"invalid YAML: {problem}" + (f" ({context})" if context and "duplicate" not in problem else "")
        raise ScenarioError([Problem(path, line, "", message, snippet=snippet(text, line))]) from None
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
                    item = ScenarioError([Problem(
                        item.path, line, "name",
                        f"duplicate scenario name {item.name!r} (first at {first.path}:{first.line_of('name')})",
                    )])
                else:
                    seen[item.name] = item
            out.append(item)
    return out
