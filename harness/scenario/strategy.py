"""The strategy language: a named set of real Prefect task and flow options, and the presets.

A ``Policy`` is what a scenario's ``strategies:`` and a strategies file
declare: options a user sets on ``@task`` / ``@flow`` (retries, delays,
jitter, a retry condition, a timeout, flow retries). Applying one to a run is
``harness.policies.apply``'s job; ``Policy.task_options`` prints the
``@task(...)`` that reproduces it in a user's code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from harness.scenario.problems import did_you_mean
from harness.scenario.resolve import SPEC, spec_pattern

MAX_DELAYS = 50  # Prefect refuses a longer retry_delay_seconds list


def _delays(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if list(value) != ["exponential"]:
        keys = ", ".join(map(str, value))
        hint = next(
            (h for k in value if isinstance(k, str) and "did you mean" in (h := did_you_mean(k, ["exponential"]))), ""
        )
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


class ExponentialDelays(_Model):
    """``{exponential: {base: 1, factor: 2, cap: 30}}``: one delay per retry, ``base * factor**n`` up to ``cap``."""

    exponential: Exponential


RetryCondition = Annotated[
    str,
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "transient", "description": "retry 5xx, 429, timeouts and connection errors only"},
                {"type": "string", "pattern": spec_pattern(), "description": "'module:function'"},
            ]
        }
    ),
]


CACHE_POLICIES = ("default", "none", "inputs", "task_source", "flow_parameters", "run_id")


def _cache_policy(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"cache_policy is a policy's name, or names joined by `+`, got {value!r}")
    parts = [p.strip() for p in value.split("+")]
    for part in parts:
        if part not in CACHE_POLICIES:
            raise ValueError(f"unknown cache policy {part!r}{did_you_mean(part, CACHE_POLICIES)}")
    if len(parts) > 1 and ("none" in parts or "default" in parts):
        raise ValueError(f"`none` and `default` stand alone: join only {', '.join(CACHE_POLICIES[2:])} with `+`")
    return "+".join(parts)


CachePolicyName = Annotated[
    str,
    BeforeValidator(_cache_policy),
    WithJsonSchema(
        {"type": "string", "pattern": rf"^({'|'.join(CACHE_POLICIES)})(\s*\+\s*({'|'.join(CACHE_POLICIES[2:])}))*$"}
    ),
]


def prefect_cache_policy(name: str) -> Any:
    """Prefect's own policy object for ``name`` (``inputs+task_source`` is Prefect's compound policy)."""
    import prefect.cache_policies as policies

    objects = {
        "default": policies.DEFAULT,
        "none": policies.NO_CACHE,
        "inputs": policies.INPUTS,
        "task_source": policies.TASK_SOURCE,
        "flow_parameters": policies.FLOW_PARAMETERS,
        "run_id": policies.RUN_ID,
    }
    parts = [objects[p] for p in name.split("+")]
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return out


class Policy(_Model):
    """A named fault-tolerance strategy, applied to the tasks whose names match ``tasks``."""

    name: SkipJsonSchema[str]  # the key it is listed under, never written in its body
    description: str = Field(default="", description="Free text, shown in reports.")
    source: str = Field(default="", description="Where the values come from, shown in reports.")
    tasks: Annotated[str, Field(min_length=1)] = Field(
        default="*", description='Task name or glob the options apply to (default "*": every task).'
    )
    retries: NonNegativeInt | None = Field(default=None, description="@task(retries=N): retries of each task run.")
    retry_delay_seconds: Annotated[
        NonNegativeFloat | Annotated[list[NonNegativeFloat], Field(max_length=MAX_DELAYS)] | Exponential | None,
        BeforeValidator(
            _delays,
            json_schema_input_type=NonNegativeFloat
            | Annotated[list[NonNegativeFloat], Field(max_length=MAX_DELAYS)]
            | ExponentialDelays
            | None,
        ),
    ] = Field(
        default=None,
        description="Seconds before each retry: 10, one per retry ([1, 5, 30]), or "
        "{exponential: {base: 1, factor: 2, cap: 30}} (needs `retries`).",
    )
    retry_jitter_factor: NonNegativeFloat | None = Field(
        default=None, description="@task(retry_jitter_factor=...): Prefect's random jitter on each delay."
    )
    retry_condition: RetryCondition | None = Field(
        default=None,
        description="`transient` (5xx, 429, timeouts, connection errors) or 'module:function' taking "
        "(task, task_run, state), as Prefect's retry_condition_fn.",
    )
    honour_retry_after: bool = Field(
        default=False, description="Wait what a 429 or 503 asks (Retry-After, x-ratelimit-reset) before a retry."
    )
    timeout_seconds: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="@task(timeout_seconds=...): the time limit of one task run."
    )
    flow_retries: NonNegativeInt | None = Field(
        default=None, description="@flow(retries=N): retries of the whole flow run."
    )
    flow_retry_delay_seconds: NonNegativeFloat | None = Field(
        default=None, description="@flow(retry_delay_seconds=...): seconds before a flow retry."
    )

    persist_result: bool | None = Field(
        default=None, description="@task(persist_result=...): write each task run's result to the result storage."
    )
    cache_policy: CachePolicyName | None = Field(
        default=None,
        description="@task(cache_policy=...): Prefect's policy, `default` (inputs, task source and the flow run's "
        "id), `none`, `inputs`, `task_source`, `flow_parameters`, `run_id`, or several joined by `+`.",
    )
    cache_expiration: NonNegativeFloat | None = Field(
        default=None, description="@task(cache_expiration=...): seconds a cached result is used for."
    )

    tags: tuple[Annotated[str, Field(min_length=1)], ...] | None = Field(
        default=None,
        description="@task(tags=...): tags added to the task's own; a tag limit of `concurrency_limits` caps "
        "the task runs holding it at once.",
    )

    client_max_retries: NonNegativeInt | None = Field(
        default=None,
        description="PREFECT_CLIENT_MAX_RETRIES: how often Prefect's API client retries a request (Prefect: 5).",
    )
    client_retry_extra_codes: tuple[Annotated[int, Field(ge=100, le=599)], ...] | None = Field(
        default=None,
        description="PREFECT_CLIENT_RETRY_EXTRA_CODES: statuses the client retries beside 408, 429, 502 and 503.",
    )
    client_retry_jitter_factor: NonNegativeFloat | None = Field(
        default=None, description="PREFECT_CLIENT_RETRY_JITTER_FACTOR: jitter on the client's backoff (Prefect: 0.2)."
    )

    @model_validator(mode="after")
    def _cache_needs_results(self) -> Policy:
        if self.persist_result is False and self.cache_policy not in (None, "none"):
            raise ValueError(
                f"persist_result: false with cache_policy: {self.cache_policy}: Prefect ignores a cache policy "
                "when results are not persisted; drop one of them"
            )
        return self

    @field_validator("retry_condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is None or value == "transient" or SPEC.fullmatch(value):
            return value
        hint = did_you_mean(value, ["transient"])
        hint = hint.removeprefix("; ") + " " if "did you mean" in hint else ""
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
                    self.persist_result,
                    self.cache_policy,
                    self.cache_expiration,
                    self.tags,
                )
            )
            or self.honour_retry_after
        )

    def client_settings(self) -> dict[str, Any]:
        """The Prefect settings (by name) this policy sets on Prefect's API client for a run."""
        values = {
            "PREFECT_CLIENT_MAX_RETRIES": self.client_max_retries,
            "PREFECT_CLIENT_RETRY_EXTRA_CODES": set(self.client_retry_extra_codes)
            if self.client_retry_extra_codes is not None
            else None,
            "PREFECT_CLIENT_RETRY_JITTER_FACTOR": self.client_retry_jitter_factor,
        }
        return {k: v for k, v in values.items() if v is not None}

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
        if self.persist_result is not None:
            out["persist_result"] = self.persist_result
        if self.cache_policy is not None:
            out["cache_policy"] = prefect_cache_policy(self.cache_policy)
        if self.cache_expiration is not None:
            out["cache_expiration"] = timedelta(seconds=self.cache_expiration)
        if self.tags is not None:
            out["tags"] = set(task.tags) | set(self.tags)
        return out

    def task_options(self) -> str:
        """The ``@task(...)`` (and ``@flow(...)``) that reproduce this policy in a user's code, and the client's
        settings."""
        settings = " ".join(
            f"{k}={','.join(map(str, sorted(v))) if isinstance(v, set) else _num(v)}"
            for k, v in self.client_settings().items()
        )
        if not self.changes_tasks() and self.flow_retries is None:
            return settings or "the flow's own options"
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
        if self.persist_result is not None:
            parts.append(f"persist_result={self.persist_result}")
        if self.cache_policy is not None:
            names = [{"none": "NO_CACHE"}.get(p, p.upper()) for p in self.cache_policy.split("+")]
            parts.append(f"cache_policy={' + '.join(names)}")
        if self.cache_expiration is not None:
            parts.append(f"cache_expiration=timedelta(seconds={_num(self.cache_expiration)})")
        text = f"@task({', '.join(parts)})" if parts else ""
        if text and self.tasks != "*":
            text += f" on tasks {self.tasks!r}"
        if self.flow_retries is not None:
            flow = f"retries={self.flow_retries}"
            if self.flow_retry_delay_seconds:
                flow += f", retry_delay_seconds={_num(self.flow_retry_delay_seconds)}"
            text += (" " if text else "") + f"@flow({flow})"
        return f"{text} {settings}".strip()

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
            name="cached",
            description="results persisted and cached on the task's inputs and source: a new flow run reuses them",
            persist_result=True,
            cache_policy="inputs+task_source",
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


def named_policy(value: Any) -> Any:
    """A strategy as listed under its name (``__name__``, put there by ``with_names``): a preset, or options."""
    if not isinstance(value, dict) or "__name__" not in value:
        return value
    body = dict(value)
    name = body.pop("__name__")
    if body:
        return {**body, "name": name}
    if name not in PRESETS:
        raise ValueError(
            f"unknown strategy {name!r}{did_you_mean(str(name), tuple(PRESETS))}; "
            "or give its options (retries, retry_delay_seconds, ...) to define it here"
        )
    return PRESETS[name]


def with_names(value: Any) -> Any:
    """Tell each strategy of a ``strategies:`` mapping its own name (the key it is listed under)."""
    if not isinstance(value, dict):
        return value
    for name, body in value.items():
        named = [key for key in ("name", "__name__") if isinstance(body, dict) and key in body]
        if named:  # it would be overridden (or, for the private key, rename it): refuse it as the schema does
            raise ValueError(
                f"strategy {name!r}: unknown key {named[0]!r}; a strategy is named by the key it is listed under"
            )
    return {
        name: {"__name__": name, **(body or {})} if isinstance(body, dict) or body is None else body
        for name, body in value.items()
    }


def strategies_json_schema(schema: dict[str, Any]) -> None:
    """A ``strategies:`` mapping's JSON Schema: a preset's name may stand alone, any other name needs options.

    Pydantic gives ``{"additionalProperties": <body or null>}``; each preset becomes a property
    that takes that, and other names a body with at least one option (``expect`` alone is not one).
    """
    value: dict[str, Any] = schema["additionalProperties"]  # {"anyOf": [{"$ref": body}, {"type": "null"}]}
    body = next(s for s in value["anyOf"] if "$ref" in s)
    schema["properties"] = {
        name: {**value, "description": f"preset: {p.description}; {p.task_options()}"} for name, p in PRESETS.items()
    }
    options = [info.alias or key for key, info in Policy.model_fields.items() if key != "name"]
    schema["additionalProperties"] = {
        **body,
        "anyOf": [{"required": [key]} for key in options],
        "description": "a strategy of your own: at least one option (a name alone must be a preset's)",
    }
    if "minLength" in schema:  # pydantic words the mapping's min_length for a string
        schema["minProperties"] = schema.pop("minLength")


class StrategiesFile(_Model):
    """A strategies file: ``strategies: {name: {retries: 3, ...}, preset_name: }``."""

    strategies: Annotated[
        dict[str, Annotated[Policy, BeforeValidator(named_policy)]],
        BeforeValidator(with_names, json_schema_input_type=dict[str, Policy | None]),
        Field(
            min_length=1,
            description="Named strategies for `harness compare --strategies-file`: a preset's name alone, "
            "or options of your own.",
            json_schema_extra=strategies_json_schema,
        ),
    ]


def resolve(name: str, defined: dict[str, Policy] | None = None) -> Policy:
    """A policy by name: one defined in a strategies file, else a built-in preset."""
    if defined and name in defined:
        return defined[name]
    if name in PRESETS:
        return PRESETS[name]
    raise KeyError(f"unknown strategy {name!r}{did_you_mean(name, sorted({*PRESETS, *(defined or {})}))}")
