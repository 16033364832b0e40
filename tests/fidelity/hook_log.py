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

RAN: list[tuple[str, str, str, Any]] = []  # (flow | task, name, kind, the flow run's id)

_KIND_OF_TYPE = {
    "COMPLETED": "on_completion",
    "FAILED": "on_failure",
    "CRASHED": "on_crashed",
    "RUNNING": "on_running",
    "CANCELLING": "on_cancellation",
}


def logged(hook: Callable[[Any, Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """``hook``, logging each call in ``RAN`` before it runs (its name kept: Prefect logs hooks by name)."""

    @functools.wraps(hook)
    def wrapper(owner: Any, run: Any, state: Any) -> Any:
        where, run_id = ("task", None) if isinstance(owner, Task) else ("flow", run.id)
        RAN.append((where, owner.name, _KIND_OF_TYPE.get(state.type.value, state.type.value), run_id))
        return hook(owner, run, state)

    return wrapper


def counted(ran: list[Any], flow_run_id: Any = None) -> list[list[Any]]:
    """``[[owner, name, kind, times], ...]``, sorted: what the two sides compare. ``ran`` holds (owner, name,
    kind), or, as logged here, (flow | task, name, kind, flow run id): a flow run other than ``flow_run_id``
    (the case's own) is an ``other flow``."""
    counts: dict[tuple[str, str, str], int] = {}
    for owner, name, kind, *run in ran:
        if owner == "flow" and run and run[0] != flow_run_id:
            owner = "other flow"
        counts[(owner, name, kind)] = counts.get((owner, name, kind), 0) + 1
    return sorted([*key, n] for key, n in counts.items())
