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
import functools
import importlib
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, field_validator

from harness._errors import HarnessError

TASK_OPTIONS = ("retries", "retry_delay_seconds", "retry_jitter_factor", "retry_condition_fn", "timeout_seconds")
MAX_HONOURED_WAIT = 3600.0
MAX_DELAYS = 50  # Prefect refuses a longer retry_delay_seconds list
CONDITION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


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
        response = exc.response
        headers = {k.lower(): v for k, v in response.headers.items()}
        return is_transient_status(response.status_code) or is_rate_limited(response.status_code, headers)
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError):
        return True
    except Exception:
        return False
    return False


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds a rate-limited answer asks the client to wait: ``Retry-After`` or ``x-ratelimit-reset``.

    Both are measured from the answer's ``Date`` header when it has one (the
    server's own clock, immune to the client's clock skew), else from now.
    """
    return _retry_after(tuple(response.headers.items()), time.time())


def honouring_retry_after(condition: Callable[..., bool]) -> Callable[..., bool]:
    """Production wrapper: when ``condition`` allows a retry, first wait what a 429/503 asks.

    Prefect has no per-attempt delay; waiting inside the retry condition is the mechanism::

        @task(retries=3, retry_condition_fn=honouring_retry_after(my_condition))
    """

    @functools.wraps(condition)
    def wrapped(task: Any, task_run: Any, state: Any) -> bool:
        if not condition(task, task_run, state):
            return False
        wait = _wait_asked(state)
        if wait:
            time.sleep(min(wait, MAX_HONOURED_WAIT))
        return True

    return wrapped


def _wait_asked(state: Any) -> float | None:
    try:
        state.result()
    except httpx.HTTPStatusError as exc:
        return retry_after_seconds(exc.response)
    except Exception:
        return None
    return None


def wait_for_retry_after(task: Any, task_run: Any, state: Any) -> bool:
    """Production retry condition: retry everything, first waiting what a 429/503 asks.

    For tasks whose every failure is worth retrying::

        @task(retries=3, retry_condition_fn=wait_for_retry_after)
    """
    return honouring_retry_after(lambda *_: True)(task, task_run, state)


def retry_on_transient_honouring_retry_after(task: Any, task_run: Any, state: Any) -> bool:
    """Production retry condition: as ``retry_on_transient``, and first waits what a 429/503 asks.

    Prefect has no per-attempt delay; waiting inside the condition is the mechanism::

        @task(retries=3, retry_delay_seconds=1, retry_condition_fn=retry_on_transient_honouring_retry_after)
    """
    return honouring_retry_after(retry_on_transient)(task, task_run, state)


def _delays(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if list(value) != ["exponential"]:
        keys = ", ".join(map(str, value))
        close = [k for k in value if isinstance(k, str) and _close(k, "exponential")]
        hint = "; did you mean 'exponential'?" if close else ""
        raise ValueError(
            f"retry_delay_seconds is seconds (10), a list of seconds ([1, 5, 30]) or "
            f"{{exponential: {{base: 1, factor: 2, cap: 30}}}}; got a mapping with {keys}{hint}"
        )
    spec = value["exponential"]
    if not isinstance(spec, dict) or "base" not in spec:
        raise ValueError(
            f"exponential delays are {{exponential: {{base: seconds, factor: 2, cap: seconds}}}}, got {spec!r}"
        )
    unknown = [k for k in spec if k not in ("base", "factor", "cap")]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in exponential delays; expected base, factor, cap")
    return Exponential(**spec)


def _close(word: str, target: str) -> bool:
    import difflib

    return bool(difflib.get_close_matches(word, [target], n=1))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exponential(_Model):
    """Exponential delays ``base * factor**n``, each at most ``cap``."""

    base: NonNegativeFloat
    factor: Annotated[float, Field(ge=1.0)] = 2.0
    cap: NonNegativeFloat | None = None

    def delays(self, retries: int) -> list[float]:
        out = [self.base * self.factor**n for n in range(min(retries, MAX_DELAYS))]
        return [min(d, self.cap) if self.cap is not None else d for d in out]


class Policy(_Model):
    """A named fault-tolerance strategy, applied to the tasks whose names match ``tasks``."""

    name: str
    description: str = ""
    source: str = ""
    tasks: Annotated[str, Field(min_length=1)] = "*"
    retries: NonNegativeInt | None = None
    retry_delay_seconds: Annotated[
        NonNegativeFloat | Annotated[list[NonNegativeFloat], Field(max_length=MAX_DELAYS)] | Exponential | None,
        BeforeValidator(_delays),
    ] = None
    retry_jitter_factor: NonNegativeFloat | None = None
    retry_condition: str | None = None  # "transient" or "module:function"
    honour_retry_after: bool = False
    timeout_seconds: Annotated[float, Field(gt=0)] | None = None
    flow_retries: NonNegativeInt | None = None
    flow_retry_delay_seconds: NonNegativeFloat | None = None

    @field_validator("retry_condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is None or value == "transient" or CONDITION.fullmatch(value):
            return value
        hint = "did you mean 'transient'? " if _close(value, "transient") else ""
        raise ValueError(
            f"unknown retry condition {value!r}; {hint}give `transient` or a 'module:function' "
            "taking (task, task_run, state), as Prefect's retry_condition_fn"
        )

    @field_validator("retry_delay_seconds")
    @classmethod
    def _exponential_needs_retries(cls, value: Any, info: Any) -> Any:
        if isinstance(value, Exponential) and info.data.get("retries") is None:
            raise ValueError(
                "exponential delays need `retries` beside them: Prefect takes one delay per retry "
                "(retry_delay_seconds=[...]), so the list's length is the number of retries"
            )
        return value

    def changes_tasks(self) -> bool:
        return (
            any(
                v is not None
                for v in (
                    self.retries,
                    self.retry_delay_seconds,
                    self.retry_jitter_factor,
                    self.retry_condition,
                    self.timeout_seconds,
                )
            )
            or self.honour_retry_after
        )

    def delays(self) -> float | list[float] | None:
        """``retry_delay_seconds`` as Prefect takes it: seconds, or one delay per retry."""
        if isinstance(self.retry_delay_seconds, Exponential):
            return self.retry_delay_seconds.delays(self.retries or 0)
        return self.retry_delay_seconds

    def options_for(self, task: Any) -> dict[str, Any]:
        """The task options this policy sets on ``task`` (others keep the task's own)."""
        out: dict[str, Any] = {}
        if self.retries is not None:
            out["retries"] = self.retries
        if self.retry_delay_seconds is not None:
            out["retry_delay_seconds"] = self.delays()
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
        if self.retry_delay_seconds is not None:
            parts.append(f"retry_delay_seconds={_num(self.delays())}")
        if self.retry_jitter_factor is not None:
            parts.append(f"retry_jitter_factor={_num(self.retry_jitter_factor)}")
        condition = self._condition_name()
        if condition:
            parts.append(f"retry_condition_fn={condition}")
        if self.timeout_seconds is not None:
            parts.append(f"timeout_seconds={_num(self.timeout_seconds)}")
        text = f"@task({', '.join(parts)})" if parts else ""
        if text and self.tasks != "*":
            text += f" on tasks {self.tasks!r}"
        if self.flow_retries is not None:
            flow = f"retries={self.flow_retries}"
            if self.flow_retry_delay_seconds:
                flow += f", retry_delay_seconds={_num(self.flow_retry_delay_seconds)}"
            text += (" " if text else "") + f"@flow({flow})"
        return text

    def _condition_name(self) -> str | None:
        """The name of the production condition in ``harness.policies`` that does what this one does."""
        if self.retry_condition == "transient":
            return "retry_on_transient_honouring_retry_after" if self.honour_retry_after else "retry_on_transient"
        if self.retry_condition:
            name = self.retry_condition.rsplit(":", 1)[-1]
            return f"honouring_retry_after({name})" if self.honour_retry_after else name
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
        """Seconds since 1970 on the virtual clock (for ``x-ratelimit-reset`` without a ``Date``)."""
        return self.epoch_start + self.now()

    def last_served(self, task_run_id: Any) -> Any:
        for call in reversed(self.calls):
            if call.task_run == task_run_id:
                return call
        return None


def _served_is_transient(call: Any) -> bool:
    if call.status is None:  # every transport fault and timeout of the language is transient
        return call.endpoint is not None  # an unmatched request is the scenario's mistake
    if call.served.startswith("malformed"):
        return False
    headers = {k.lower(): v for k, v in call.headers}
    return is_transient_status(call.status) or is_rate_limited(call.status, headers)


def _epoch_of(value: str | None) -> float | None:
    """An HTTP-date (``Wed, 21 Oct 2015 07:28:00 GMT``) as epoch seconds."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _retry_after(headers: tuple[tuple[str, str], ...], epoch_now: float) -> float | None:
    """Seconds the answer with ``headers`` asks to wait: ``Retry-After``, else ``x-ratelimit-reset``.

    Times are measured from the answer's ``Date`` when it has one (the server's
    clock, which is also what makes a scenario's figures independent of the
    day it runs), else from ``epoch_now``.
    """
    h = {k.lower(): v.strip() for k, v in headers}
    now = _epoch_of(h.get("date")) or epoch_now
    if "retry-after" in h:
        try:
            return max(float(h["retry-after"]), 0.0)
        except ValueError:
            at = _epoch_of(h["retry-after"])  # Retry-After may be an HTTP-date (RFC 9110)
            return None if at is None else max(at - now, 0.0)
    if h.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in h:
        try:
            return max(float(h["x-ratelimit-reset"]) - now, 0.0)
        except ValueError:
            return None
    return None


def _import_function(spec: str, near: Any) -> Callable[..., bool]:
    """``module:function``, importable also beside the flow's own package (as the flow itself is)."""
    module_name, _, name = spec.partition(":")
    added = None
    source = getattr(sys.modules.get(getattr(getattr(near, "fn", None), "__module__", "")), "__file__", None)
    if source is not None:
        depth = getattr(near.fn, "__module__", "").count(".") + 1
        root = str(Path(source).resolve().parents[depth - 1])
        if root not in sys.path:
            added = root
            sys.path.append(root)
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise HarnessError(f"retry condition {spec!r}: cannot import it: {type(exc).__name__}: {exc}") from exc
    finally:
        if added is not None:
            sys.path.remove(added)
    if not callable(fn):
        raise HarnessError(f"retry condition {spec!r} is a {type(fn).__name__}, not a function")
    return fn  # type: ignore[no-any-return]


def make_condition(policy: Policy, log: CallLog, flow: Any = None) -> Callable[..., bool] | None:
    """The retry condition of ``policy`` for one run, judging by that run's call log.

    ``transient`` judges by what the endpoint last served the task run (the
    seed flows never call ``raise_for_status``, so the exception says nothing),
    or by the exception when the run made no call. ``honour_retry_after`` waits,
    on the run's clock, what that answer asked before allowing the retry.
    """
    if policy.retry_condition is None and not policy.honour_retry_after:
        return None
    user: Callable[..., bool] | None = None
    if policy.retry_condition not in (None, "transient"):
        user = _import_function(str(policy.retry_condition), flow)

    def condition(task: Any, task_run: Any, state: Any) -> bool:
        call = log.last_served(task_run.id)
        if policy.retry_condition == "transient":
            allowed = retry_on_transient(task, task_run, state) if call is None else _served_is_transient(call)
        elif user is not None:
            allowed = bool(user(task, task_run, state))
        else:
            allowed = True
        if allowed and policy.honour_retry_after and call is not None:
            wait = _retry_after(call.headers, log.epoch())
            if wait:
                log.sleep(min(wait, MAX_HONOURED_WAIT))
        return allowed

    condition.__name__ = condition.__qualname__ = policy._condition_name() or "condition"
    return condition


def tasks_of(flow: Any) -> list[Any]:
    """The Prefect tasks the flow's module can call: its own globals, and those of the modules it imports."""
    from types import ModuleType

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


@contextmanager
def applied(policy: Policy | None, flow: Any, log: CallLog) -> Iterator[Any]:
    """Set ``policy``'s options on the flow's tasks for one run; yields the flow to call.

    The flow's own task objects are changed in place (so the flow runs as it
    is, without editing it) and restored afterwards, also when the run raises.
    """
    if policy is None:
        yield flow
        return
    saved: list[tuple[Any, dict[str, Any]]] = []
    condition = make_condition(policy, log, flow)
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
            name="fixed",
            description="three retries, ten seconds apart",
            retries=3,
            retry_delay_seconds=10,
        ),
        Policy(
            name="exponential_jitter",
            description="four retries, exponential backoff from 1 s (cap 30 s), jitter 0.5",
            retries=4,
            retry_delay_seconds=Exponential(base=1, factor=2, cap=30),
            retry_jitter_factor=0.5,
        ),
        Policy(
            name="transient",
            description="three retries, only of transient errors (5xx, 429, timeouts, connection errors), 1 s apart",
            retries=3,
            retry_delay_seconds=1,
            retry_condition="transient",
        ),
        Policy(
            name="transient_retry_after",
            description="as transient, and waits Retry-After / x-ratelimit-reset before a retry",
            retries=3,
            retry_delay_seconds=1,
            retry_condition="transient",
            honour_retry_after=True,
        ),
        Policy(
            name="temporal",
            description=(
                "Temporal's default activity retry policy: initial interval 1 s, backoff coefficient 2.0, "
                "maximum interval 100 x initial; maximum attempts unlimited, bounded here to 10 attempts"
            ),
            source="docs.temporal.io/encyclopedia/retry-policies (Temporal Server 1.x; SDK RetryPolicy defaults)",
            retries=9,
            retry_delay_seconds=Exponential(base=1, factor=2, cap=100),
        ),
        Policy(
            name="dagster",
            description="Dagster's RetryPolicy(): max_retries=1, no delay, no backoff, no jitter",
            source="docs.dagster.io, dagster._core.definitions.policy.RetryPolicy (dagster 1.x)",
            retries=1,
            retry_delay_seconds=0,
        ),
        Policy(
            name="airflow",
            description=(
                "Airflow's defaults: retries from core.default_task_retries = 0, retry_delay 300 s, "
                "retry_exponential_backoff off; with 0 retries it never retries"
            ),
            source=(
                "Airflow configuration reference [core] default_task_retries; "
                "BaseOperator retry_delay (Airflow 2.x/3.x)"
            ),
            retries=0,
            retry_delay_seconds=300,
        ),
        Policy(
            name="airflow_retries_3",
            description="Airflow's retry_delay default (300 s, constant) with retries=3, as DAG authors commonly set",
            source="Airflow BaseOperator defaults (Airflow 2.x/3.x) with retries=3",
            retries=3,
            retry_delay_seconds=300,
        ),
        Policy(
            name="polly",
            description=(
                "Polly v8 RetryStrategyOptions defaults: 3 retries, constant 2 s delay, no jitter, every exception"
            ),
            source="pollydocs.org, Polly.Retry.RetryStrategyOptions (Polly.Core 8.x)",
            retries=3,
            retry_delay_seconds=2,
        ),
    ]
}


def load_policies(path: str | Path) -> dict[str, Policy]:
    """Named strategies from a YAML file: ``strategies: {name: {retries: 3, ...}}``.

    Raises ``ScenarioError`` (a ``ValueError``) naming the file, line and field
    of the first thing wrong, with the offending lines, as the scenario loader does.
    """
    import yaml
    from pydantic import ValidationError

    from harness._errors import Problem, ScenarioError
    from harness._yaml import LineDict, load_documents
    from harness.loader import _yaml_problem, field_path, line_at, read_text, short_repr, snippet, yaml_type
    from harness.model import did_you_mean

    path = Path(path)
    text = read_text(path)

    def problem(loc: tuple[str | int, ...], message: str, line: int | None = None) -> ScenarioError:
        line = line or line_at(raw, loc) or 1
        return ScenarioError([Problem(path, line, field_path(loc), message, snippet=snippet(text, line))])

    try:
        docs = load_documents(text, str(path))
    except yaml.YAMLError as exc:
        raise ScenarioError([_yaml_problem(exc, path, text)]) from None
    raw: Any = docs[0][1] if len(docs) == 1 else None
    if len(docs) != 1 or not isinstance(raw, LineDict) or "strategies" not in raw:
        raise ScenarioError(
            [
                Problem(
                    path,
                    docs[0][0] if docs else 1,
                    "",
                    "a strategies file is one YAML document with a `strategies:` mapping of named strategies, "
                    "e.g. `strategies: {patient: {retries: 5, retry_delay_seconds: 10}}`",
                    snippet=snippet(text, docs[0][0] if docs else 1),
                )
            ]
        )
    extra = [k for k in raw if k != "strategies"]
    if extra:
        raise problem((extra[0],), f"unknown key {extra[0]!r}; a strategies file holds only `strategies:`")
    strategies = raw["strategies"]
    if not isinstance(strategies, LineDict) or not strategies:
        raise problem(
            ("strategies",),
            f"expected a mapping of named strategies, got {short_repr(strategies)} ({yaml_type(strategies)})",
        )
    for key, line, first in strategies.duplicates:
        raise problem(("strategies", key), f"duplicate strategy {key!r} (first on line {first}); keep one", line)
    fields = [f for f in Policy.model_fields if f != "name"]
    out: dict[str, Policy] = {}
    for name, options in strategies.items():
        if not isinstance(name, str):
            raise problem(("strategies", name), f"strategy names are strings, got {name!r}; quote it")
        if options is None:
            if name not in PRESETS:
                raise problem(
                    ("strategies", name),
                    f"unknown strategy {name!r}{did_you_mean(name, tuple(PRESETS))}; "
                    "or give its options (retries, retry_delay_seconds, ...) to define it here",
                )
            out[name] = PRESETS[name]
            continue
        if not isinstance(options, dict):
            raise problem(
                ("strategies", name), f"expected a mapping of options, got {short_repr(options)} ({yaml_type(options)})"
            )
        for key in options:
            if key not in fields:
                raise problem(("strategies", name, key), f"unknown key {key!r}{did_you_mean(str(key), fields)}")
        try:
            out[name] = Policy.model_validate({**options, "name": name})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = (
                "strategies",
                name,
                *(p for p in err["loc"] if not isinstance(p, str) or p in fields or isinstance(p, int)),
            )
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] not in ("value_error",):
                message += f"; got {short_repr(err.get('input'))} ({yaml_type(err.get('input'))})"
            raise problem(loc[:4], message) from None
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
