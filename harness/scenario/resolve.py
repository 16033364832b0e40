"""One resolver for every ``module:function`` a scenario names: flows, retry conditions, invariants.

A module is imported from the scenario file's folder, the folder the command
runs in, or anywhere on ``sys.path``, as ``python -m`` would; the folders are
on ``sys.path`` only while the import runs. Every failure is an
``ImportError`` whose message names what was asked for, the folders searched
and the fix; the loader turns it into a problem at the field's line.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from harness._errors import shown
from harness.flows import BUILTIN_FLOWS
from harness.scenario.problems import did_you_mean

SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
STORED_ROWS = "harness_stored_rows"  # a flow module's hook: where its rows are stored, for data invariants


def spec_pattern() -> str:
    """``SPEC`` as a JSON Schema ``pattern``, anchored (a schema's pattern searches, ``SPEC`` is full-matched)."""
    return f"^{SPEC.pattern}$"


def _folders(near: Path | None) -> list[str]:
    out = [str(near.resolve())] if near is not None else []
    cwd = os.getcwd()
    return out + ([cwd] if cwd not in out else [])


@contextmanager
def _importable(near: Path | None) -> Iterator[list[str]]:
    """The scenario's folder and the working directory on ``sys.path`` for one import."""
    folders = _folders(near)
    added = [f for f in folders if f not in sys.path]
    sys.path.extend(added)
    try:
        yield folders
    finally:
        for folder in added:
            sys.path.remove(folder)


def _import(module_name: str, what: str, near: Path | None) -> ModuleType:
    with _importable(near) as folders:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise ImportError(f"cannot import {what} module {module_name!r}: {type(exc).__name__}: {exc}") from exc
            searched = ", ".join(shown(Path(f)) or "." for f in folders)
            raise ImportError(
                f"cannot import {what} module {module_name!r}: ModuleNotFoundError: no module named {exc.name!r} "
                f"in {searched} or on sys.path; put it beside the scenario file or in the folder you run from, "
                "or install its package (pip install -e .)"
            ) from None
        except (Exception, SystemExit) as exc:  # the module's own code runs here: report, never crash the loader
            raise ImportError(f"cannot import {what} module {module_name!r}: {type(exc).__name__}: {exc}") from exc


def _attribute(module: ModuleType, module_name: str, attr: str, what: str, kind: type | None = None) -> Any:
    obj = getattr(module, attr, None)
    if obj is None:
        names = [n for n, v in vars(module).items() if (isinstance(v, kind) if kind else callable(v))]
        hint = did_you_mean(attr, names) if names else ""
        raise ImportError(f"{what} module {module_name!r} has no attribute {attr!r}{hint}")
    return obj


def resolve_function(spec: str, what: str, near: Path | None = None) -> Callable[..., Any]:
    """The function ``module:function`` names (a retry condition, an invariant)."""
    if not SPEC.fullmatch(spec):
        raise ImportError(f"{what} must be 'package.module:function', got {spec!r}")
    module_name, _, attr = spec.partition(":")
    fn = _attribute(_import(module_name, what, near), module_name, attr, what)
    if not callable(fn):
        raise ImportError(f"{what} {spec!r} is a {type(fn).__name__}, not a function")
    return fn  # type: ignore[no-any-return]


def resolve_target(spec: str, near: Path | None = None) -> tuple[Any, str, Callable[..., Any]]:
    """What ``functions: [{call: ...}]`` names: ``(owner, name, callable)``, where ``owner`` is the module
    (``package.module:function``) or the class (``package.module:Class.method``) that holds it."""
    module_name, _, path = spec.partition(":")
    owner: Any = _import(module_name, "function target", near)
    *outer, name = path.split(".")
    for part in outer:
        owner = _attribute(owner, module_name, part, "function target")
    if inspect.getattr_static(owner, name, None) is None:
        _attribute(owner, module_name, name, "function target")  # raises, with a did-you-mean
    fn = getattr(owner, name)
    if not callable(fn):
        raise ImportError(f"function target {spec!r} is a {type(fn).__name__}, not something to call")
    return owner, name, fn


def resolve_exception(spec: str, near: Path | None = None) -> type[Exception]:
    """The exception class ``raise: {type: 'package.module:Error'}`` names."""
    module_name, _, attr = spec.partition(":")
    obj = _attribute(_import(module_name, "exception", near), module_name, attr, "exception", type)
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise ImportError(f"{spec!r} is a {type(obj).__name__}, not an exception class")
    if not issubclass(obj, Exception):  # KeyboardInterrupt, SystemExit: they would stop the harness, not the flow
        raise ImportError(f"{spec!r} is not an Exception: it would stop the run itself, not fail the flow's call")
    return obj


def resolve_flow(spec: str, base: Path | None = None) -> Any:
    """A flow by built-in name (``github_stars``) or ``package.module:flow``."""
    from prefect import Flow

    target = BUILTIN_FLOWS.get(spec, spec)
    if ":" in target and not SPEC.fullmatch(target):
        raise ImportError(f"flow must be a built-in name or 'package.module:flow_function', got {spec!r}")
    if ":" not in target:
        raise ImportError(
            f"unknown flow {spec!r}: name a built-in ({', '.join(BUILTIN_FLOWS)}) or 'package.module:flow'"
            + did_you_mean(spec, list(BUILTIN_FLOWS)).replace("; expected one of", "; built-ins are")
        )
    module_name, _, attr = target.partition(":")
    obj = _attribute(_import(module_name, "flow", base), module_name, attr, "flow", Flow)
    if not isinstance(obj, Flow):
        raise ImportError(f"{target!r} is a {type(obj).__name__}, not a Prefect flow (decorate it with @flow)")
    return obj


def tasks_of(flow: Any) -> list[Any]:
    """The Prefect tasks the flow's module can call: its own globals, and those of the modules it imports."""
    from prefect import Task

    module = sys.modules.get(flow.fn.__module__)
    if module is None:
        return []
    namespaces = [vars(module)] + [
        vars(m) for m in vars(module).values() if isinstance(m, ModuleType) and m is not module
    ]
    found: dict[int, Any] = {}
    for namespace in namespaces:
        for obj in namespace.values():
            if isinstance(obj, Task):
                found.setdefault(id(obj), obj)
    return list(found.values())


def stored_rows_of(flow: Any) -> Callable[[dict[str, Any]], tuple[str, str]] | None:
    """The flow module's ``harness_stored_rows(parameters) -> (sqlite path, query)``, if it declares one."""
    module = sys.modules.get(flow.fn.__module__)
    hook = getattr(module, STORED_ROWS, None)
    return hook if callable(hook) else None
