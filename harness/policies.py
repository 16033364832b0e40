"""Fault-tolerance strategies ("policies"): named sets of real Prefect task and flow options.

A policy changes only options a user sets on ``@task`` / ``@flow`` (retries,
delays, jitter, a retry condition, a timeout, flow retries); applying one sets
them on the flow's own task objects for the duration of a run, without editing
the flow. ``Policy.task_options`` prints the ``@task(...)`` that reproduces it.

Retry conditions:

- ``transient`` retries 5xx, 429, timeouts and connection errors, never other
  4xx or malformed bodies. A flow that never calls ``raise_for_status`` (the
  seed flows) turns a 404 into a ``KeyError``, so in the harness the condition
  judges by what the endpoint last served that task run. In production, judge
  by the exception: ``retry_on_transient`` below is the copyable version.
- ``honour_retry_after`` makes the condition wait for ``Retry-After`` seconds
  (or until ``x-ratelimit-reset``) before allowing the retry: Prefect has no
  per-attempt delay, so a retry condition that waits is the mechanism.
"""

from __future__ import annotations

import fnmatch
import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

TASK_OPTIONS = ("retries", "retry_delay_seconds", "retry_jitter_factor", "retry_condition_fn", "timeout_seconds")
TRANSIENT_FAULTS = {
    "connect_timeout", "read_timeout", "write_timeout", "pool_timeout",
    "connect_error", "connection_reset", "remote_protocol_error",
}
MAX_HONOURED_WAIT = 3600.0


def is_transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def is_rate_limited(status: int, headers: dict[str, str]) -> bool:
    """A 429, or a 403 that says it is a rate limit (GitHub's primary and secondary limits)."""
    if status == 429:
        return True
    return status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)


def can_succeed_on_retry(call: Any) -> bool:
    """Whether the same request could get a better answer later: not after a 404, a 400, a 301..."""
    if call.status is None:
        return True  # a transport fault: the network may heal
    if call.served.startswith("malformed"):
        return True  # a broken body is the server's passing trouble
    headers = {k.lower(): v for k, v in call.headers}
    if is_rate_limited(call.status, headers):
        return True
    return not (300 <= call.status < 500) or call.status == 408


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Production retry condition: retry timeouts, connection errors, 5xx and 429, nothing else.

    Copy it into a flow whose tasks call ``response.raise_for_status()``::

        @task(retries=3, retry_condition_fn=retry_on_transient)
    """
    try:
        state.result()
    except httpx.HTTPStatusError as exc:
        return is_transient_status(exc.response.status_code)
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError):
        return True
    except Exception:
        return False
    return False


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds a rate-limited answer asks the client to wait: ``Retry-After`` or ``x-ratelimit-reset``."""
    headers = tuple(response.headers.items())
    return _retry_after(_Answer(headers), time.time())


def retry_on_transient_honouring_retry_after(task: Any, task_run: Any, state: Any) -> bool:
    """Production retry condition: as ``retry_on_transient``, and first waits what a 429/503 asks.

    Prefect has no per-attempt delay; waiting inside the condition is the mechanism::

        @task(retries=3, retry_delay_seconds=1, retry_condition_fn=retry_on_transient_honouring_retry_after)
    """
    try:
        state.result()
    except httpx.HTTPStatusError as exc:
        if not is_transient_status(exc.response.status_code):
            return False
        wait = retry_after_seconds(exc.response)
        if wait:
            time.sleep(min(wait, MAX_HONOURED_WAIT))
        return True
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError):
        return True
    except Exception:
        return False
    return False


class _Answer:
    def __init__(self, headers: tuple[tuple[str, str], ...]) -> None:
        self.headers = headers


def _delays(value: Any) -> Any:
    if isinstance(value, dict) and list(value) == ["exponential"]:
        spec = value["exponential"]
        if not isinstance(spec, dict) or not set(spec) <= {"base", "factor", "cap"} or "base" not in spec:
            raise ValueError("exponential delays are {exponential: {base: seconds, factor: 2, cap: seconds}}")
        return Exponential(**spec)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exponential(_Model):
    """Exponential delays ``base * factor**n``, each at most ``cap``."""

    base: NonNegativeFloat
    factor: Annotated[float, Field(ge=1.0)] = 2.0
    cap: NonNegativeFloat | None = None

    def delays(self, retries: int) -> list[float]:
        out = [self.base * self.factor**n for n in range(min(retries, 50))]  # Prefect allows 50 delays
        return [min(d, self.cap) if self.cap is not None else d for d in out]


class Policy(_Model):
    """A named fault-tolerance strategy, applied to the tasks whose names match ``tasks``."""

    name: str
    description: str = ""
    source: str = ""
    tasks: str = "*"
    retries: NonNegativeInt | None = None
    retry_delay_seconds: Annotated[
        NonNegativeFloat | list[NonNegativeFloat] | Exponential | None, BeforeValidator(_delays)
    ] = None
    retry_jitter_factor: NonNegativeFloat | None = None
    retry_condition: str | None = None  # "transient" or "module:function"
    honour_retry_after: bool = False
    timeout_seconds: Annotated[float, Field(gt=0)] | None = None
    flow_retries: NonNegativeInt | None = None
    flow_retry_delay_seconds: NonNegativeFloat | None = None

    def changes_tasks(self) -> bool:
        return any(
            v is not None for v in (self.retries, self.retry_delay_seconds, self.retry_jitter_factor,
                                    self.retry_condition, self.timeout_seconds)
        ) or self.honour_retry_after

    def options_for(self, task: Any) -> dict[str, Any]:
        """The task options this policy sets on ``task`` (others keep the task's own)."""
        out: dict[str, Any] = {}
        retries = self.retries if self.retries is not None else task.retries
        if self.retries is not None:
            out["retries"] = self.retries
        if isinstance(self.retry_delay_seconds, Exponential):
            out["retry_delay_seconds"] = self.retry_delay_seconds.delays(retries)
        elif self.retry_delay_seconds is not None:
            out["retry_delay_seconds"] = self.retry_delay_seconds
        if self.retry_jitter_factor is not None:
            out["retry_jitter_factor"] = self.retry_jitter_factor
        if self.timeout_seconds is not None:
            out["timeout_seconds"] = self.timeout_seconds
        return out

    def task_options(self) -> str:
        """The ``@task(...)`` (and ``@flow(...)``) that reproduce this policy in a user's code."""
        if not self.changes_tasks() and self.flow_retries is None:
            return "the flow's own options"
        parts = []
        if self.retries is not None:
            parts.append(f"retries={self.retries}")
        if isinstance(self.retry_delay_seconds, Exponential):
            e = self.retry_delay_seconds
            parts.append(f"retry_delay_seconds={[_num(d) for d in e.delays(self.retries or 0)]}")
        elif self.retry_delay_seconds is not None:
            parts.append(f"retry_delay_seconds={_num(self.retry_delay_seconds)}")
        if self.retry_jitter_factor is not None:
            parts.append(f"retry_jitter_factor={_num(self.retry_jitter_factor)}")
        condition = self._condition_name()
        if condition:
            parts.append(f"retry_condition_fn={condition}")
        if self.timeout_seconds is not None:
            parts.append(f"timeout_seconds={_num(self.timeout_seconds)}")
        text = f"@task({', '.join(parts)})" if parts else ""
        if self.flow_retries is not None:
            flow = f"retries={self.flow_retries}"
            if self.flow_retry_delay_seconds:
                flow += f", retry_delay_seconds={_num(self.flow_retry_delay_seconds)}"
            text += (" " if text else "") + f"@flow({flow})"
        return text

    def _condition_name(self) -> str | None:
        if self.retry_condition == "transient":
            return "retry_on_transient_honouring_retry_after" if self.honour_retry_after else "retry_on_transient"
        if self.retry_condition:
            return self.retry_condition.rsplit(":", 1)[-1]
        return "wait_for_retry_after" if self.honour_retry_after else None


def _num(value: Any) -> Any:
    if isinstance(value, list):
        return [_num(v) for v in value]
    return int(value) if isinstance(value, float) and value.is_integer() else value


class CallLog:
    """What the harness knows of a run's calls, for retry conditions that judge by them."""

    def __init__(self, calls: list[Any], sleep: Callable[[float], None], now: Callable[[], float]) -> None:
        self.calls, self.sleep, self.now = calls, sleep, now
        self.epoch_start = time.time()

    def epoch(self) -> float:
        """Seconds since 1970 on the virtual clock (for ``x-ratelimit-reset``)."""
        return self.epoch_start + self.now()

    def last_served(self, task_run_id: Any) -> Any:
        for call in reversed(self.calls):
            if call.task_run == task_run_id:
                return call
        return None


def _served_is_transient(call: Any) -> bool:
    if call is None:
        return True  # no call was made: the failure is the flow's own, retry as Prefect would
    if call.status is None:
        return call.served.split(" ")[0] in TRANSIENT_FAULTS or call.served.startswith("task timeout")
    if call.served.startswith("malformed"):
        return False
    headers = {k.lower(): v for k, v in call.headers}
    return is_transient_status(call.status) or is_rate_limited(call.status, headers)


def _retry_after(call: Any, epoch_now: float) -> float | None:
    if call is None:
        return None
    headers = {k.lower(): v for k, v in call.headers}
    if "retry-after" in headers:
        try:
            return max(float(headers["retry-after"]), 0.0)
        except ValueError:
            return None
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        try:
            return max(float(headers["x-ratelimit-reset"]) - epoch_now, 0.0)
        except ValueError:
            return None
    return None


def make_condition(policy: Policy, log: CallLog) -> Callable[..., bool] | None:
    """The retry condition of ``policy`` for one run, judging by that run's call log."""
    if policy.retry_condition is None and not policy.honour_retry_after:
        return None
    user: Callable[..., bool] | None = None
    if policy.retry_condition not in (None, "transient"):
        module, _, name = str(policy.retry_condition).partition(":")
        user = getattr(importlib.import_module(module), name)

    def condition(task: Any, task_run: Any, state: Any) -> bool:
        call = log.last_served(task_run.id)
        if policy.retry_condition == "transient":
            allowed = _served_is_transient(call)
        elif user is not None:
            allowed = bool(user(task, task_run, state))
        else:
            allowed = True
        if allowed and policy.honour_retry_after:
            wait = _retry_after(call, log.epoch())
            if wait:
                log.sleep(min(wait, MAX_HONOURED_WAIT))
        return allowed

    condition.__name__ = policy._condition_name() or "condition"
    return condition


def tasks_of(flow: Any) -> list[Any]:
    """The Prefect tasks defined in the module of ``flow``."""
    import sys

    from prefect import Task

    module = sys.modules.get(flow.fn.__module__)
    return [obj for obj in vars(module).values() if isinstance(obj, Task)] if module else []


@contextmanager
def applied(policy: Policy | None, flow: Any, log: CallLog) -> Iterator[Any]:
    """Set ``policy``'s options on the flow's tasks for one run; yields the flow to call."""
    if policy is None:
        yield flow
        return
    saved: list[tuple[Any, dict[str, Any]]] = []
    condition = make_condition(policy, log)
    try:
        for task in tasks_of(flow):
            if not fnmatch.fnmatchcase(task.name, policy.tasks):
                continue
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
        yield flow
    finally:
        for task, values in saved:
            for key, value in values.items():
                setattr(task, key, value)


PRESETS: dict[str, Policy] = {
    p.name: p
    for p in [
        Policy(name="as_written", description="the flow's own settings, unchanged"),
        Policy(name="no_retries", description="no task retries", retries=0),
        Policy(
            name="fixed", description="three retries, ten seconds apart", retries=3, retry_delay_seconds=10,
        ),
        Policy(
            name="exponential_jitter",
            description="four retries, exponential backoff from 1 s (cap 30 s), jitter 0.5",
            retries=4, retry_delay_seconds={"exponential": {"base": 1, "factor": 2, "cap": 30}},
            retry_jitter_factor=0.5,
        ),
        Policy(
            name="transient",
            description="three retries, only of transient errors (5xx, 429, timeouts, connection errors), 1 s apart",
            retries=3, retry_delay_seconds=1, retry_condition="transient",
        ),
        Policy(
            name="transient_retry_after",
            description="as transient, and waits Retry-After / x-ratelimit-reset before a retry",
            retries=3, retry_delay_seconds=1, retry_condition="transient", honour_retry_after=True,
        ),
        Policy(
            name="temporal",
            description=(
                "Temporal's default activity retry policy: initial interval 1 s, backoff coefficient 2.0, "
                "maximum interval 100 x initial; maximum attempts unlimited, bounded here to 10 attempts"
            ),
            source="docs.temporal.io/encyclopedia/retry-policies (Temporal Server 1.x; SDK RetryPolicy defaults)",
            retries=9, retry_delay_seconds={"exponential": {"base": 1, "factor": 2, "cap": 100}},
        ),
        Policy(
            name="dagster",
            description="Dagster's RetryPolicy(): max_retries=1, no delay, no backoff, no jitter",
            source="docs.dagster.io, dagster._core.definitions.policy.RetryPolicy (dagster 1.x)",
            retries=1, retry_delay_seconds=0,
        ),
        Policy(
            name="airflow",
            description=(
                "Airflow's defaults: retries from core.default_task_retries = 0, retry_delay 300 s, "
                "retry_exponential_backoff off; with 0 retries it never retries"
            ),
            source="Airflow configuration reference [core] default_task_retries; BaseOperator retry_delay (Airflow 2.x/3.x)",
            retries=0, retry_delay_seconds=300,
        ),
        Policy(
            name="airflow_retries_3",
            description="Airflow's retry_delay default (300 s, constant) with retries=3, as DAG authors commonly set",
            source="Airflow BaseOperator defaults (Airflow 2.x/3.x) with retries=3",
            retries=3, retry_delay_seconds=300,
        ),
        Policy(
            name="polly",
            description="Polly v8 RetryStrategyOptions defaults: 3 retries, constant 2 s delay, no jitter, every exception",
            source="pollydocs.org, Polly.Retry.RetryStrategyOptions (Polly.Core 8.x)",
            retries=3, retry_delay_seconds=2,
        ),
    ]
}


def load_policies(path: str | Path) -> dict[str, Policy]:
    """Named strategies from a YAML file: ``strategies: {name: {retries: 3, ...}}``."""
    import yaml
    from pydantic import ValidationError

    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("strategies"), dict):
        raise ValueError(f"{path}: expected a mapping with a `strategies:` mapping of named strategies")
    out = {}
    for name, options in data["strategies"].items():
        try:
            out[name] = Policy.model_validate({"name": name, **(options or {})})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{path}: strategies.{name}.{where}: {first['msg']}") from None
    return out


def resolve(name: str, defined: dict[str, Policy] | None = None) -> Policy:
    """A policy by name: one defined in a strategies file, else a built-in preset."""
    if defined and name in defined:
        return defined[name]
    if name in PRESETS:
        return PRESETS[name]
    import difflib

    choices = sorted({*PRESETS, *(defined or {})})
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(choices)}"
    raise KeyError(f"unknown strategy {name!r}{hint}")
