"""Applying a strategy to one run: its options set on the flow's own task objects, then restored.

A policy changes only options a user sets on ``@task`` / ``@flow``; the flow
runs as it is, without editing it. Its retry condition judges by what the
endpoint last served the task run (``CallLog``): the seed flows never call
``raise_for_status``, so a 404 reaches them as a ``KeyError`` and the
exception alone says nothing.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness._errors import HarnessError
from harness.policies.conditions import (
    MAX_HONOURED_WAIT,
    is_rate_limited,
    is_transient_status,
    raised,
    retry_after_headers,
    retry_on_transient,
    transient_error,
)
from harness.scenario.resolve import resolve_function, tasks_of
from harness.scenario.strategy import Policy

TASK_OPTIONS = (
    "retries",
    "retry_delay_seconds",
    "retry_jitter_factor",
    "retry_condition_fn",
    "timeout_seconds",
    "persist_result",
    "cache_policy",
    "cache_expiration",
    "cache_key_fn",
    "tags",
)


class CallLog:
    """What the harness knows of a run's calls, for retry conditions that judge by them."""

    def __init__(self, calls: list[Any], sleep: Callable[[float], None], now: Callable[[], float]) -> None:
        self.calls, self.sleep, self.now = calls, sleep, now
        self.epoch_start = time.time()

    def epoch(self) -> float:
        """Seconds since 1970 on the virtual clock (for ``x-ratelimit-reset`` without a ``Date``)."""
        return self.epoch_start + self.now()

    def last_served(self, task_run_id: Any) -> Any:
        """The last request an endpoint served the task run (a function target's calls are judged by the
        exception they raise instead)."""
        for call in reversed(self.calls):
            if call.task_run == task_run_id and call.transport != "function":
                return call
        return None


def _served_is_transient(call: Any) -> bool:
    if call.status is None:  # every transport fault and timeout of the language is transient
        return call.endpoint is not None  # an unmatched request is the scenario's mistake
    if call.served.startswith("malformed"):
        return False
    headers = {k.lower(): v for k, v in call.headers}
    return is_transient_status(call.status) or is_rate_limited(call.status, headers)


def _failure_judged(state: Any) -> bool | None:
    exc = raised(state)
    return transient_error(exc) if exc is not None else None


def make_condition(policy: Policy, log: CallLog, near: Path | None = None) -> Callable[..., bool] | None:
    """The retry condition of ``policy`` for one run, judging by that run's call log.

    ``transient`` judges a database's or a file's failure by its exception
    (``transient_error``), and any other by what the endpoint last served the
    task run (the seed flows never call ``raise_for_status``, so the exception
    says nothing), or by the exception when the run made no call. ``honour_retry_after`` waits,
    on the run's clock, what that answer asked before allowing the retry.
    """
    if policy.retry_condition is None and not policy.honour_retry_after:
        return None
    user: Callable[..., bool] | None = None
    if policy.retry_condition not in (None, "transient"):
        user = resolve_function(str(policy.retry_condition), "retry condition", near)

    def condition(task: Any, task_run: Any, state: Any) -> bool:
        call = log.last_served(task_run.id)
        if policy.retry_condition == "transient":
            judged = _failure_judged(state)  # a database's or a file's failure says itself whether it passes
            if judged is not None:
                allowed = judged
            else:
                allowed = retry_on_transient(task, task_run, state) if call is None else _served_is_transient(call)
        elif user is not None:
            allowed = bool(user(task, task_run, state))
        else:
            allowed = True
        if allowed and policy.honour_retry_after and call is not None:
            wait = retry_after_headers(call.headers, log.epoch())
            if wait:
                log.sleep(min(wait, MAX_HONOURED_WAIT))
        return allowed

    condition.__name__ = condition.__qualname__ = policy._condition_name() or "condition"
    return condition


@contextmanager
def client_settings(settings: dict[str, Any]) -> Iterator[None]:
    """Prefect's API client settings for one run, as ``temporary_settings`` sets them."""
    if not settings:
        yield
        return
    import prefect.settings
    from prefect.settings import temporary_settings

    with temporary_settings(updates={getattr(prefect.settings, k): v for k, v in settings.items()}):
        yield


@contextmanager
def applied(policy: Policy | None, flow: Any, log: CallLog, near: Path | None = None) -> Iterator[Any]:
    """Set ``policy``'s options on the flow's tasks for one run; yields the flow to call.

    The flow's own task objects are changed in place (so the flow runs as it
    is, without editing it) and restored afterwards, also when the run raises.
    """
    if policy is None:
        yield flow
        return
    saved: list[tuple[Any, dict[str, Any]]] = []
    condition = make_condition(policy, log, near)
    tasks = tasks_of(flow)
    matched = [t for t in tasks if fnmatch.fnmatchcase(t.name, policy.tasks)]
    if policy.changes_tasks() and not matched and policy.tasks != "*":
        names = ", ".join(sorted({t.name for t in tasks})) or "none found"
        raise HarnessError(
            f"strategy {policy.name!r}: tasks {policy.tasks!r} matches no task of flow {flow.name!r} "
            f"(its tasks: {names})"
        )
    try:
        for task in matched:
            options = policy.options_for(task)
            if condition is not None:
                options["retry_condition_fn"] = condition
            if not options:
                continue
            configured = task.with_options(**options)  # Prefect's own validation and normalisation
            saved.append((task, {k: getattr(task, k) for k in TASK_OPTIONS}))
            for key in TASK_OPTIONS:
                setattr(task, key, getattr(configured, key))
        if policy.flow_retries is not None:
            flow = flow.with_options(
                retries=policy.flow_retries, retry_delay_seconds=policy.flow_retry_delay_seconds or 0
            )
        with client_settings(policy.client_settings()):
            yield flow
    finally:
        for task, values in saved:
            for key, value in values.items():
                setattr(task, key, value)
