"""Which state hooks ran, as the idioms' own hooks log them: the oracle's count, made with plain Prefect.

Every hook of the idioms is wrapped by ``logged``: when Prefect calls it, it
logs (flow | subflow | task, the flow's or task's name, the kind of hook the
state it was called for runs). The reference reads ``RAN`` after each case;
the harness's count (``Outcome.hooks``) is its own, made from Prefect's
engines, and the two must agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from prefect import Task

RAN: list[tuple[str, str, str]] = []

_KIND_OF_TYPE = {
    "COMPLETED": "on_completion",
    "FAILED": "on_failure",
    "CRASHED": "on_crashed",
    "RUNNING": "on_running",
    "CANCELLING": "on_cancellation",
    "CANCELLED": "on_cancellation",
}


def logged(hook: Callable[[Any, Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """``hook``, logging each call in ``RAN`` before it runs (its name kept: Prefect logs hooks by name)."""

    @functools.wraps(hook)
    def wrapper(owner: Any, run: Any, state: Any) -> Any:
        if isinstance(owner, Task):
            where = "task"
        else:
            where = "flow" if getattr(run, "parent_task_run_id", None) is None else "subflow"
        RAN.append((where, owner.name, _KIND_OF_TYPE.get(state.type.value, state.type.value)))
        return hook(owner, run, state)

    return wrapper


def counted(ran: list[tuple[str, str, str]]) -> list[list[Any]]:
    """``[[owner, name, kind, times], ...]``, sorted: what the two sides compare."""
    counts: dict[tuple[str, str, str], int] = {}
    for entry in ran:
        counts[tuple(entry)] = counts.get(tuple(entry), 0) + 1  # type: ignore[index]
    return sorted([*key, n] for key, n in counts.items())
