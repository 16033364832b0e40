"""The scenario model: typed, frozen, validated once at the loader's boundary."""

from __future__ import annotations

import base64
import binascii
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from harness.flows import BUILTIN_FLOWS
from harness.scenario.kinds import FILE_KINDS, KINDS, READY_TARGETS, SQLITE_KINDS
from harness.scenario.problems import did_you_mean, line_at, type_name
from harness.scenario.resolve import spec_pattern
from harness.scenario.strategy import Policy, named_policy, strategies_json_schema, with_names

FAULTS = (
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "pool_timeout",
    "connect_error",
    "connection_reset",
    "remote_protocol_error",
)
# Faults that exist only on a real connection: served by the wire server, never by respx.
WIRE_FAULTS = ("close_before_response", "partial_body", "bad_chunk", "slow_body")
BODY_FAULTS = ("partial_body", "bad_chunk", "slow_body")  # a fault in the answer's body: status and body allowed
CONNECT_FAULTS = ("connect_error", "connect_timeout")  # decided when the connection opens, before any request
NOT_ON_WIRE = ("pool_timeout",)  # the client's own pool: no connection can serve it
API_FAULTS = ("lost_answer",)  # Prefect's API only: the server applies the request, the client never hears back
TRANSPORTS = ("respx", "wire")
MALFORMED = (
    "truncated_json",
    "invalid_json",
    "html",
    "empty_body",
    "wrong_content_type",
    "random_bytes",
)
STATE_NAMES = (
    "Scheduled",
    "Late",
    "AwaitingRetry",
    "AwaitingConcurrencySlot",
    "Pending",
    "Running",
    "Retrying",
    "Paused",
    "Suspended",
    "Completed",
    "Cached",
    "RolledBack",
    "Failed",
    "TimedOut",
    "Crashed",
    "Cancelling",
    "Cancelled",
)
STATE_TYPES = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
INVARIANTS = ("completes", "no_data_loss", "no_duplicates", "no_orphan_flow_runs")


class _Unset:
    """The value of an optional key that was not given (``json: null`` is a value)."""

    def __repr__(self) -> str:
        return "<unset>"

    def __copy__(self) -> _Unset:
        return self

    def __deepcopy__(self, memo: Any) -> _Unset:
        return self  # pydantic copies defaults: the sentinel must stay one object

    def __reduce__(self) -> str:
        return "UNSET"  # unpickled (a crashing run's scenario, in its process) as this module's one sentinel


UNSET: Any = _Unset()


def _read(forms: TypeAdapter[Any], value: Any) -> Any:
    """``value`` read by the model of its input forms, the one the JSON Schema is written from (so the loader
    accepts what the schema accepts); raises ``_Unfit`` when it fits none, for the caller to say why."""
    try:
        return forms.validate_python(value, strict=True)
    except ValidationError as exc:
        raise _Unfit(exc.errors()[0]["msg"]) from None


class _Unfit(ValueError):
    """The input fits none of its forms; the caller says why in the scenario's words."""


Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a finite number of seconds, 0 or more


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(kind: str, choices: tuple[str, ...]) -> Any:
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"{kind} must be a string, got {value!r} ({type_name(value)})")
        if value not in choices:
            raise ValueError(f"unknown {kind} {value!r}{did_you_mean(value, choices)}")
        return value

    return BeforeValidator(check, json_schema_input_type=Literal[choices])  # the JSON Schema's enum


FaultKind = Annotated[str, _one_of("fault", FAULTS + WIRE_FAULTS + API_FAULTS)]
MalformedKind = Annotated[str, _one_of("malformed body", MALFORMED)]
StateName = Annotated[str, _one_of("state name", STATE_NAMES)]
StateTypeName = Annotated[str, _one_of("state type", STATE_TYPES)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- latency ------------------------------------------------------------------


class Latency(_Model):
    """Seconds spent before a step answers: fixed, uniform or lognormal."""

    kind: Literal["fixed", "uniform", "lognormal"]
    a: float  # fixed seconds, uniform low, lognormal median
    b: float = 0.0  # uniform high, lognormal sigma

    def draw(self, rng: Any) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return float(rng.uniform(self.a, self.b))
        return float(self.a * rng.lognormvariate(0.0, self.b))


class UniformLatency(_Model):
    """``{uniform: [low, high]}``: seconds drawn uniformly between low and high (0 <= low <= high)."""

    uniform: Annotated[list[Seconds], Field(min_length=2, max_length=2)]


class LognormalParams(_Model):
    median: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    sigma: Seconds


class LognormalLatency(_Model):
    """``{lognormal: {median: m, sigma: s}}``: seconds drawn from a lognormal distribution."""

    lognormal: LognormalParams


LATENCY_INPUT = Seconds | UniformLatency | LognormalLatency  # the forms ``_latency`` reads
_LATENCY_FORMS: TypeAdapter[Any] = TypeAdapter(LATENCY_INPUT)


def _latency(value: Any) -> Any:
    """A step's ``latency``, read by its input forms (``LATENCY_INPUT``), as a ``Latency``."""
    if isinstance(value, Latency):
        return value
    try:
        form = _read(_LATENCY_FORMS, value)
    except _Unfit:
        _why_not_latency(value)
        raise
    if isinstance(form, UniformLatency):
        low, high = form.uniform
        if low > high:  # what no schema says
            _why_not_latency(value)
        return Latency(kind="uniform", a=low, b=high)
    if isinstance(form, LognormalLatency):
        return Latency(kind="lognormal", a=form.lognormal.median, b=form.lognormal.sigma)
    return Latency(kind="fixed", a=float(form))


def _why_not_latency(value: Any) -> None:
    """Why ``value`` is no latency, in the scenario's words (raises; returns when it cannot tell)."""
    expected = "a number of seconds, {uniform: [a, b]} or {lognormal: {median: m, sigma: s}}"
    if _seconds(value):
        raise ValueError(f"latency must be >= 0 seconds, got {value!r}")
    if isinstance(value, dict) and list(value) == ["uniform"]:  # not two numbers, or the low above the high
        raise ValueError(f"uniform latency must be [low, high] seconds with 0 <= low <= high, got {value['uniform']!r}")
    if isinstance(value, dict) and list(value) == ["lognormal"]:
        raise ValueError(f"lognormal latency must be {{median: m > 0, sigma: s >= 0}}, got {value['lognormal']!r}")
    raise ValueError(f"latency must be {expected}, got {value!r} ({type_name(value)})")


# -- response steps -------------------------------------------------------------


def _body_files(schema: dict[str, Any]) -> None:
    """``json_file`` / ``body_file`` in a step's schema: the loader reads them into ``json`` / ``text``."""
    schema["properties"]["json_file"] = {
        "type": "string",
        "description": "JSON body read from this file (relative to the scenario file, or a fixture of "
        "harness/fixtures/ by name: 'cfpb/search_size10_debt_recovery.json').",
    }
    schema["properties"]["body_file"] = {
        "type": "string",
        "description": "Text body read from this file (relative to the scenario file, or a fixture by name).",
    }


class Step(_Model):
    """One response step: an answer, a transport fault or a malformed body."""

    model_config = ConfigDict(json_schema_extra=_body_files)

    status: Annotated[int, Field(ge=100, le=599)] | None = Field(
        default=None, description="HTTP status of the answer (default 200; a malformed body's too)."
    )
    headers: dict[str, str] = Field(default={}, description="Response headers; numbers are sent as text.")
    json_: Any = Field(default=UNSET, alias="json", description="JSON body (for truncated_json, the body to cut).")
    text: str | None = Field(default=None, description="Text body.")
    body_base64: str | None = Field(default=None, description="Binary body, base64-encoded.")
    fault: FaultKind | None = Field(
        default=None, description="Raise the httpx exception this transport failure raises."
    )
    malformed: MalformedKind | None = Field(
        default=None, description="Serve a broken body (status 200 unless `status`)."
    )
    latency: Annotated[
        Latency | None,
        BeforeValidator(lambda v: None if v is None else _latency(v), json_schema_input_type=LATENCY_INPUT | None),
    ] = Field(
        default=None,
        description="Seconds spent before it answers or fails, on the virtual clock: a number, "
        "{uniform: [a, b]} or {lognormal: {median: m, sigma: s}}.",
    )
    pass_: bool = Field(
        default=False,
        alias="pass",
        description="`prefect_api` only: let the request through to the real server, which answers it.",
    )
    times: PositiveInt = Field(default=1, description="Calls this step serves (default 1).")
    until: NonNegativeFloat | None = Field(  # a window: serve every call until this virtual second
        None, description="Instead of `times`: serve every call until the virtual clock reaches this second."
    )

    @field_validator("body_base64")
    @classmethod
    def _b64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError(
                    f"body_base64 is not valid base64 ({exc}), got {value[:40]!r}; encode the bytes with base64"
                ) from None
        return value

    @field_validator("headers", mode="before", json_schema_input_type=dict[str, str | float])
    @classmethod
    def _headers(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if self.until is not None and "times" in self.model_fields_set:
            raise ValueError("a step serves `times` calls or every call `until` a virtual second, not both: keep one")
        bodies = [k for k in ("json", "text", "body_base64") if self.has(k)]
        if self.pass_ and (self.fault or self.malformed or bodies or self.status is not None or self.headers):
            raise ValueError("a `pass` step lets the real server answer: remove its status, headers, body or fault")
        if self.fault and self.malformed:
            raise ValueError(
                "a step is an answer, a `fault` or a `malformed` body, not both `fault` and `malformed`: keep one"
            )
        if self.fault and self.fault not in BODY_FAULTS and (bodies or self.status is not None or self.headers):
            extra = ", ".join(
                bodies + (["status"] if self.status is not None else []) + (["headers"] if self.headers else [])
            )
            raise ValueError(f"a `fault` step sends no answer; remove {extra}")
        if len(bodies) > 1:
            raise ValueError(f"a step has one body; got {' and '.join(bodies)}: keep one")
        if self.malformed and bodies and bodies != ["json"]:
            raise ValueError(
                f"a `malformed` step makes its own body; remove {bodies[0]} (only `json`, for truncated_json)"
            )
        return self

    def has(self, key: str) -> bool:
        if key == "json":
            return self.json_ is not UNSET
        return getattr(self, key) is not None

    def describe(self) -> str:
        if self.pass_:
            return "pass"
        if self.fault:
            return self.fault
        if self.malformed:
            return f"malformed {self.malformed}" + (f" ({self.status})" if self.status else "")
        return str(self.status or 200)


class Chaos(_Model):
    """Random faults: each call is faulted with probability ``rate``."""

    rate: Annotated[float, Field(ge=0.0, le=1.0)] = Field(description="Probability that a call is faulted.")
    faults: Annotated[tuple[Step, ...], Field(min_length=1)] = Field(
        description="Steps a faulted call is served, one chosen uniformly (no `times`)."
    )
    otherwise: Step = Field(description="The step every other call is served (no `times`).")

    @model_validator(mode="after")
    def _no_times(self) -> Chaos:
        if any(step.times != 1 for step in (*self.faults, self.otherwise)):
            raise ValueError(
                "`times` has no meaning inside `chaos`: every call draws anew; script bursts in `responses`"
            )
        return self


class RequestLine(_Model):
    """``METHOD URL``; a URL ending in ``*`` matches by prefix, a query matches as a subset."""

    method: str
    url: str
    prefix: bool
    query: tuple[tuple[str, str], ...]
    text: str

    def matches(self, method: str, url: str) -> bool:
        if method != self.method:
            return False
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        if self.prefix:
            if not url.startswith(self.url):
                return False
        elif base != self.url:
            return False
        if self.query:
            got = set(parse_qsl(parts.query, keep_blank_values=True))
            return set(self.query) <= got
        return True

    def differences(self, method: str, url: str) -> list[str]:
        """How a request misses this line, one item per part (``path /a, not /b``); empty exactly when it matches."""
        out = [] if method == self.method else [f"method {method}, not {self.method}"]
        got, mine = urlsplit(url), urlsplit(self.url)
        if got.scheme != mine.scheme:
            out.append(f"scheme {got.scheme}, not {mine.scheme}")
        origin = f"{mine.scheme}://{mine.netloc}"
        if self.prefix and not url.startswith(self.url):
            rest, got_rest = self.url[len(origin) :], url[len(f"{got.scheme}://{got.netloc}") :]
            if rest == "" and not got.netloc.startswith(mine.netloc):  # the prefix ends inside the host
                out.append(f"host {got.netloc}, not {mine.netloc}*")
            elif rest != "" and got.netloc != mine.netloc:
                out.append(f"host {got.netloc}, not {mine.netloc}")
            if rest != "" and not got_rest.startswith(rest):
                out.append(f"path {(got_rest if '?' in rest else got.path) or '(empty)'}, not {rest}*")
        elif not self.prefix:
            if got.netloc != mine.netloc:
                out.append(f"host {got.netloc}, not {mine.netloc}")
            if got.path != mine.path:
                out.append(f"path {got.path or '(empty)'}, not {mine.path or '(empty)'}")
            sent = parse_qsl(got.query, keep_blank_values=True)
            for key, value in self.query:
                if (key, value) in sent:
                    continue
                values = [v for k, v in sent if k == key]
                out.append(
                    f"query {key}={','.join(values)}, not {key}={value}" if values else f"query parameter {key} missing"
                )
        if not out and not self.matches(method, url):  # a case the parts above do not name: show it whole
            out.append(f"url {url}, not {self.url}{'*' if self.prefix else ''}")
        return out


def parse_request(value: Any) -> Any:
    """A request line, read by its input form (``RequestText``), as a ``RequestLine``."""
    if isinstance(value, RequestLine):
        return value
    try:
        _read(_REQUEST_FORMS, value)
    except _Unfit:
        _why_not_request(value)
        raise
    method, url = value.split()
    prefix = url.endswith("*")
    raw = url[:-1] if prefix else url
    split = urlsplit(raw)
    if prefix:
        return RequestLine(method=method, url=raw, prefix=True, query=(), text=f"{method} {url}")
    query = tuple(parse_qsl(split.query, keep_blank_values=True))
    base = f"{split.scheme}://{split.netloc}{split.path}"
    return RequestLine(method=method, url=base, prefix=False, query=query, text=f"{method} {url}")


def _why_not_request(value: Any) -> None:
    """Why ``value`` is no request line, in the scenario's words (raises; returns when it cannot tell)."""
    if not isinstance(value, str):
        raise ValueError(f"request must be a string 'METHOD URL', got {value!r} ({type_name(value)})")
    parts = value.split()
    if len(parts) != 2:
        raise ValueError(f"request must be 'METHOD URL', e.g. 'GET https://api.github.com/repos/o/r'; got {value!r}")
    method, url = parts
    if method not in METHODS:
        raise ValueError(f"unknown HTTP method {method!r}{did_you_mean(method, METHODS)}")
    raw = url[:-1] if url.endswith("*") else url
    split = urlsplit(raw)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise ValueError(
            f"request URL must be absolute http(s), got {url!r}; write it in full, e.g. 'https://host/path'"
        )


RequestText = Annotated[  # what ``parse_request`` reads: METHOD, then an absolute http(s) URL (``*`` ends a prefix)
    str,
    Field(
        pattern=rf"^\s*(?:{'|'.join(METHODS)})\s+[Hh][Tt][Tt][Pp][Ss]?://(?!\*\s*$)[^\s/?#]+\S*\s*$",
        examples=["GET https://api.github.com/repos/PrefectHQ/prefect", "GET https://api.github.com/repos/*"],
    ),
]
_REQUEST_FORMS: TypeAdapter[Any] = TypeAdapter(RequestText, config=ConfigDict(regex_engine="python-re"))


class Endpoint(_Model):
    """A mocked endpoint: its request line, scripted responses, then optional chaos."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["responses"]}, {"required": ["chaos"]}]})

    request: Annotated[RequestLine, BeforeValidator(parse_request, json_schema_input_type=RequestText)] = Field(
        description=f"'METHOD URL' ({', '.join(METHODS)}): a URL ending in * matches by prefix; "
        "a query string matches as a subset of the request's."
    )
    responses: tuple[Step, ...] = Field(default=(), description="Steps served in order; the last repeats for ever.")
    chaos: Chaos | None = Field(default=None, description="Random faults, instead of or after `responses`.")

    @model_validator(mode="after")
    def _something(self) -> Endpoint:
        if not self.responses and self.chaos is None:
            raise ValueError("an endpoint needs `responses`, `chaos` or both")
        return self


class ApiRoute(_Model):
    """``METHOD /path`` of Prefect's API, ``*`` standing for one path segment (an id)."""

    method: str
    path: str
    text: str

    @property
    def url(self) -> str:  # what a schedule reads its host from: Prefect's API has none of its own
        return self.path

    def matches(self, method: str, route: str) -> bool:
        """Whether a request, named by ``route_of`` (``POST /flow_runs/*/set_state``), is this route's."""
        return f"{method} {route}" == self.text


def parse_route(value: Any) -> Any:
    """A Prefect API route line, checked against the routes Prefect's API has (``api_routes.ROUTES``)."""
    if isinstance(value, ApiRoute):
        return value
    from harness.scenario.api_routes import ROUTES

    if not isinstance(value, str) or len(value.split()) != 2:
        raise ValueError(
            f"request must be 'METHOD /path' of Prefect's API, e.g. 'POST /flow_runs/*/set_state'; got {value!r}"
        )
    method, path = value.split()
    text = f"{method.upper()} {path}"
    if text not in ROUTES:
        raise ValueError(f"Prefect's API has no route {value!r}{did_you_mean(text, ROUTES)} (`*` stands for an id)")
    return ApiRoute(method=method.upper(), path=path, text=text)


def _http_route(value: Any) -> Any:
    """A route ``prefect_api`` can fault: an HTTP one (the events stream has ``events:``)."""
    route = parse_route(value)
    if route.method == "WS":
        raise ValueError(f"{route.text} is the events stream: fault it with `events:` steps, beside `prefect_api`")
    return route


RouteText = Annotated[
    str,
    Field(
        pattern=rf"^\s*(?:{'|'.join(METHODS)})\s+/\S*\s*$",
        examples=["POST /flow_runs/*/set_state", "POST /flow_runs/"],
    ),
]


class ApiEndpoint(_Model):
    """A route of Prefect's API with a schedule of faults, as an endpoint has them (``pass: true`` lets through)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["responses"]}, {"required": ["chaos"]}]})

    request: Annotated[ApiRoute, BeforeValidator(_http_route, json_schema_input_type=RouteText)] = Field(
        description="'METHOD /path' of Prefect's API (without /api), `*` for an id: 'POST /flow_runs/*/set_state'."
    )
    responses: tuple[Step, ...] = Field(default=(), description="Steps served in order; the last repeats for ever.")
    chaos: Chaos | None = Field(default=None, description="Random faults, instead of or after `responses`.")

    @model_validator(mode="after")
    def _something(self) -> ApiEndpoint:
        if not self.responses and self.chaos is None:
            raise ValueError("a prefect_api route needs `responses`, `chaos` or both")
        return self


# -- functions: faults beyond HTTP ----------------------------------------------------

CALL_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
ERROR_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class RaiseType(_Model):
    """An exception of the user's choosing: ``{type: "package.module:Error", message: "..."}``."""

    type: Annotated[str, Field(pattern=rf"^{ERROR_SPEC.pattern}$")] = Field(
        description="The exception class, 'package.module:Error' ('builtins:TimeoutError' for a built-in one)."
    )
    message: str = Field(default="", description="Its message (its one argument).")


def _raise(value: Any) -> Any:
    """``raise``: a ready kind's name, or ``{type, message}``."""
    if isinstance(value, str) and value not in KINDS:
        raise ValueError(f"unknown kind {value!r}{did_you_mean(value, KINDS)}; or give {{type: ..., message: ...}}")
    return value


class FunctionStep(_Model):
    """One step of a function target: raise a failure, or call through; after an optional latency."""

    raise_: Annotated[
        str | RaiseType | None, BeforeValidator(_raise, json_schema_input_type=Literal[KINDS] | RaiseType | None)
    ] = Field(
        default=None,
        alias="raise",
        description=f"Raise what the real failure raises: a ready kind ({', '.join(KINDS)}), or "
        "{type: 'package.module:Error', message: '...'}.",
    )
    pass_: bool = Field(default=False, alias="pass", description="Call through to the real function.")
    latency: Annotated[
        Latency | None,
        BeforeValidator(lambda v: None if v is None else _latency(v), json_schema_input_type=LATENCY_INPUT | None),
    ] = Field(
        default=None,
        description="Seconds the call takes first, on the virtual clock (a number, {uniform: [a, b]} or "
        "{lognormal: {median: m, sigma: s}}); alone, the call then goes through.",
    )
    times: PositiveInt = Field(default=1, description="Calls this step serves (default 1).")
    until: NonNegativeFloat | None = Field(
        None, description="Instead of `times`: serve every call until the virtual clock reaches this second."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> FunctionStep:
        if self.raise_ is not None and self.pass_:
            raise ValueError("a step raises or calls through (`pass: true`), not both: keep one")
        if self.raise_ is None and not self.pass_ and self.latency is None:
            raise ValueError("a step needs `raise`, `pass: true` or `latency`")
        if self.until is not None and "times" in self.model_fields_set:
            raise ValueError("a step serves `times` calls or every call `until` a virtual second, not both: keep one")
        return self

    @property
    def kind(self) -> str | None:
        """The ready kind it raises, if it raises one."""
        return self.raise_ if isinstance(self.raise_, str) else None

    def describe(self) -> str:
        if isinstance(self.raise_, RaiseType):
            return f"raise {self.raise_.type.rpartition(':')[2]}"
        return self.raise_ or "pass"


class FunctionChaos(_Model):
    """Random faults on a function target: each call is faulted with probability ``rate``."""

    rate: Annotated[float, Field(ge=0.0, le=1.0)] = Field(description="Probability that a call is faulted.")
    faults: Annotated[tuple[FunctionStep, ...], Field(min_length=1)] = Field(
        description="Steps a faulted call is served, one chosen uniformly (no `times`)."
    )
    otherwise: FunctionStep = Field(
        default=FunctionStep.model_validate({"pass": True}),
        description="The step every other call is served (default: pass).",
    )

    @model_validator(mode="after")
    def _no_times(self) -> FunctionChaos:
        if any(step.times != 1 for step in (*self.faults, self.otherwise)):
            raise ValueError(
                "`times` has no meaning inside `chaos`: every call draws anew; script bursts in `responses`"
            )
        return self


def _call(value: Any) -> Any:
    if isinstance(value, str) and ":" in value and value.split(":", 1)[0] in ("sqlite3", "file"):
        if value not in READY_TARGETS:
            raise ValueError(f"no ready target {value!r}{did_you_mean(value, tuple(READY_TARGETS))}")
    elif isinstance(value, str) and not CALL_SPEC.fullmatch(value):
        raise ValueError(
            f"call is a ready target ({', '.join(READY_TARGETS)}) or 'package.module:function' / "
            f"'package.module:Class.method'; got {value!r}"
        )
    return value


class FunctionTarget(_Model):
    """An in-process call with a schedule of faults, in the step language endpoints use."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["responses"]}, {"required": ["chaos"]}]})

    call: Annotated[str, BeforeValidator(_call)] = Field(
        description=f"A ready target ({', '.join(READY_TARGETS)}), or 'package.module:function' / "
        "'package.module:Class.method' (patched where it is defined and where the flow's module imported it)."
    )
    where: dict[str, str] = Field(
        default={},
        description="Only the calls this matches: `path`, a glob on the database's or file's path (ready targets).",
    )
    responses: tuple[FunctionStep, ...] = Field(
        default=(), description="Steps served in order; the last repeats for ever."
    )
    chaos: FunctionChaos | None = Field(default=None, description="Random faults, instead of or after `responses`.")

    @model_validator(mode="after")
    def _fits(self) -> FunctionTarget:
        if not self.responses and self.chaos is None:
            raise ValueError("a function target needs `responses`, `chaos` or both")
        allowed = READY_TARGETS.get(self.call, ())
        for key in self.where:
            if key not in allowed:
                raise ValueError(
                    f"`where: {{{key}: ...}}` is not a filter of {self.call}"
                    + (f" (it has: {', '.join(allowed)})" if allowed else " (it has none: it is not a ready target)")
                )
        steps = [*self.responses, *((*self.chaos.faults, self.chaos.otherwise) if self.chaos else ())]
        for step in steps:
            kind = step.kind
            if kind is None:
                continue
            family = self.call.split(":", 1)[0]
            if family == "sqlite3" and kind not in SQLITE_KINDS:
                raise ValueError(
                    f"{self.call} raises SQLite's errors: {kind!r} is a file's ({', '.join(SQLITE_KINDS)})"
                )
            if family == "file" and kind not in FILE_KINDS:
                raise ValueError(f"{self.call} raises a file's errors: {kind!r} is SQLite's ({', '.join(FILE_KINDS)})")
            if kind == "partial_write" and self.call != "file:write":
                raise ValueError("partial_write is a write that stops half way: only file:write serves it")
        return self

    @property
    def key(self) -> str:
        """What ``expect.calls`` and the call log name it by."""
        return self.call


def _drop(value: Any) -> Any:
    """``drop``: true, false, or a probability in (0, 1]."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and 0 < value <= 1:
        return float(value)
    raise ValueError(f"drop is true, or the probability an event is lost (above 0, at most 1); got {value!r}")


class EventStep(_Model):
    """What happens to the events the flow's process sends on Prefect's events stream (``/events/in``)."""

    pass_: bool = Field(default=False, alias="pass", description="The event reaches the server.")
    drop: Annotated[
        bool | float, BeforeValidator(_drop, json_schema_input_type=bool | Annotated[float, Field(gt=0.0, le=1.0)])
    ] = Field(
        default=False,
        description="The event is lost on the way, unknown to the client (true, or the probability of it).",
    )
    disconnect: bool = Field(
        default=False, description="The connection closes as the event is sent: the client reconnects and resends."
    )
    times: PositiveInt = Field(default=1, description="Events this step serves (default 1).")
    until: NonNegativeFloat | None = Field(
        None, description="Instead of `times`: serve every event until the virtual clock reaches this second."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> EventStep:
        kinds = [k for k in ("pass", "drop", "disconnect") if getattr(self, "pass_" if k == "pass" else k)]
        if len(kinds) != 1:
            raise ValueError(
                "an events step is one of `pass: true`, `drop: true` (or a probability) and `disconnect: true`"
                + (f"; got {' and '.join(kinds)}" if kinds else "")
            )
        if self.until is not None and "times" in self.model_fields_set:
            raise ValueError("a step serves `times` events or every event `until` a virtual second, not both")
        return self

    latency: ClassVar[None] = None  # the flow waits on no event: see the README, "Prefect's API"

    def describe(self) -> str:
        if self.drop is True:
            return "drop"
        if self.drop:
            return f"drop {self.drop:g}"
        return "disconnect" if self.disconnect else "pass"


# -- expectations -----------------------------------------------------------------


def _a_regex(value: str | None, key: str) -> str | None:
    """``value``, when it is a regular expression Python compiles."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"{key} is not a valid regular expression ({exc}), got {value!r}; escape special characters with \\"
            ) from None
    return value


def _state_match(value: Any) -> Any:
    return {"state": value} if isinstance(value, str) else value


class StateMatch(_Model):
    """A final state by exact name, by type, and optionally a message regex."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    state: StateName | None = Field(
        default=None, description="The final state's exact name (Completed, Failed, TimedOut...)."
    )
    type: StateTypeName | None = Field(default=None, description="The final state's type: FAILED covers TimedOut too.")
    message: str | None = Field(default=None, description="A regular expression searched in the state's message.")

    @field_validator("message")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _a_regex(value, "message")

    @model_validator(mode="after")
    def _needs_state(self) -> StateMatch:
        if self.state is None and self.type is None and self.message is None:
            raise ValueError("give `state`, `type` or `message`")
        return self


class TaskExpect(StateMatch):
    """Runs of a task: their final state and the retries each spent; ``runs``, how many started."""

    retries: NonNegativeInt | None = Field(default=None, description="Retries the run spent (run_count - 1).")
    runs: NonNegativeInt | None = Field(  # task runs of this name that started; 0 = it never ran
        None, description="How many runs of this task started, each as given beside it; 0: it never ran."
    )

    @model_validator(mode="after")
    def _needs_state(self) -> TaskExpect:
        if all(v is None for v in (self.state, self.type, self.message, self.retries, self.runs)):
            raise ValueError("give `state`, `type`, `message`, `retries` or `runs`")
        if self.runs == 0 and any(v is not None for v in (self.state, self.type, self.message, self.retries)):
            raise ValueError("`runs: 0` says the task never ran: it has no state or retries to check; keep `runs: 0`")
        return self


def _task_runs(value: Any) -> Any:
    if isinstance(value, str):
        return [{"state": value}]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):  # one run per item; a bare state name is shorthand there too
        if any(isinstance(v, dict) and "runs" in v for v in value):
            raise ValueError(
                "`runs` has no place in the list form, whose items are the runs: "
                "write {runs: N, state: ...} for N runs alike, or one item per run"
            )
        return [{"state": v} if isinstance(v, str) else v for v in value]
    return value


TaskRun = Annotated[TaskExpect, Field(json_schema_extra={"not": {"required": ["runs"]}})]  # an item of the list form
TASK_RUNS_INPUT = StateName | TaskExpect | list[StateName | TaskRun]  # the forms ``_task_runs`` reads


class SqliteExpect(_Model):
    """The result of a query on an SQLite file the run left in its working directory."""

    path: str = Field(description="The database file, relative to the scenario's working directory.")
    query: str = Field(description="SQL whose result is compared.")
    equals: Any = Field(description="A single value for one row of one column, else a list of rows.")


class VirtualTime(_Model):
    """Seconds the run waited on the virtual clock (retry delays, latency, timeouts)."""

    max: NonNegativeFloat | None = Field(default=None, description="At most this many seconds.")
    min: NonNegativeFloat | None = Field(default=None, description="At least this many seconds.")


class Invariant(_Model):
    """A property of the outcome: completes, no_data_loss, no_duplicates, bounded_calls or module:function."""

    kind: str
    bound: int | None = None

    def __str__(self) -> str:
        return f"bounded_calls: {self.bound}" if self.kind == "bounded_calls" else self.kind


def _invariant(value: Any) -> Any:
    """An invariant, read by its input forms (``INVARIANT_INPUT``)."""
    if isinstance(value, Invariant):
        return value
    try:
        form = _read(_INVARIANT_FORMS, value)
    except _Unfit:
        _why_not_invariant(value)
        raise
    if isinstance(form, BoundedCalls):
        return Invariant(kind="bounded_calls", bound=form.bounded_calls)
    return Invariant(kind=form)


def _why_not_invariant(value: Any) -> None:
    """Why ``value`` is no invariant, in the scenario's words (raises)."""
    if isinstance(value, str):
        raise ValueError(f"unknown invariant {value!r}{did_you_mean(value, INVARIANTS + ('bounded_calls',))}")
    if isinstance(value, dict) and list(value) == ["bounded_calls"]:
        raise ValueError(f"bounded_calls must be a whole number >= 0, got {value['bounded_calls']!r}")
    raise ValueError(
        f"an invariant is one of {', '.join(INVARIANTS)}, {{bounded_calls: N}} or 'module:function', got {value!r}"
    )


class BoundedCalls(_Model):
    """``{bounded_calls: N}``: at most N calls to each endpoint."""

    bounded_calls: NonNegativeInt


ModuleFunction = Annotated[str, Field(pattern=spec_pattern(), description="'package.module:function'")]
INVARIANT_INPUT: Any = Literal[INVARIANTS] | BoundedCalls | ModuleFunction  # the forms ``_invariant`` reads
_INVARIANT_FORMS: TypeAdapter[Any] = TypeAdapter(INVARIANT_INPUT, config=ConfigDict(regex_engine="python-re"))


HOOK_KINDS = (
    "on_completion",
    "on_failure",
    "on_cancellation",
    "on_crashed",
    "on_running",
)  # a task's: no cancelled, crashed


class FlowHooks(_Model):
    """How many of the flow's state hooks of each kind ran (every hook of a kind counts once per time it ran)."""

    on_completion: NonNegativeInt | None = None
    on_failure: NonNegativeInt | None = None
    on_cancellation: NonNegativeInt | None = None
    on_crashed: NonNegativeInt | None = None
    on_running: NonNegativeInt | None = None


class TaskHooks(_Model):
    """How many of a task's state hooks of each kind ran, over all its runs."""

    on_completion: NonNegativeInt | None = None
    on_failure: NonNegativeInt | None = None
    on_running: NonNegativeInt | None = None


LIMIT_NAME_BANNED = "/%&><"  # Prefect refuses these in a limit's name (``prefect.types.names``)


def _limit_name(value: str) -> str:
    banned = sorted({c for c in value if c in LIMIT_NAME_BANNED})
    if banned:
        raise ValueError(f"a limit's name cannot hold {' '.join(banned)} (Prefect refuses {LIMIT_NAME_BANNED})")
    return value


LimitName = Annotated[str, Field(min_length=1), AfterValidator(_limit_name)]


class ConcurrencyLimits(_Model):
    """Prefect concurrency limits on the session's server for the scenario's runs: created before, deleted after."""

    tag: dict[LimitName, PositiveInt] = Field(
        default={},
        description="Tag limits, as `prefect concurrency-limit create TAG N` makes them: at most N task runs "
        "tagged TAG hold a slot at once.",
    )
    global_: dict[LimitName, PositiveInt] = Field(
        default={},
        alias="global",
        description="Global limits, as `prefect gcl create NAME --limit N` makes them: slots the flow takes "
        "with `concurrency(NAME)`.",
    )

    @model_validator(mode="after")
    def _names_once(self) -> ConcurrencyLimits:
        tagged = sorted(n for n in self.global_ if n.startswith("tag:"))
        if tagged:
            raise ValueError(
                f"global limit {tagged[0]!r} is how Prefect names the tag limit {tagged[0][4:]!r}: "
                f"declare it under `tag` as {tagged[0][4:]!r}"
            )
        both = sorted(set(self.tag) & set(self.global_))
        if both:
            raise ValueError(
                f"{', '.join(map(repr, both))} is both a tag limit and a global limit: `expect.slots` names a limit "
                "by its name alone; give them different names"
            )
        return self

    def names(self) -> list[str]:
        return [*self.tag, *self.global_]


class WaitedExpect(_Model):
    """Bounds on the virtual seconds task runs waited for a slot of the limit."""

    max: Seconds | None = Field(default=None, description="No acquisition waited longer than this.")
    min: Seconds | None = Field(
        default=None, description="At least one acquisition waited this long (0: none needs to have waited)."
    )

    @model_validator(mode="after")
    def _a_bound(self) -> WaitedExpect:
        if self.max is None and self.min is None:
            raise ValueError("give `max`, `min` or both: an empty `waited` checks nothing")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}: no wait can be both")
        return self


class SlotsExpect(_Model):
    """One limit after the run: the slots it still holds, and how long task runs waited for one."""

    held_after: NonNegativeInt | None = Field(
        default=None, description="Slots the limit holds once the run is over (0: none leaked)."
    )
    waited: WaitedExpect | None = Field(
        default=None, description="{max: SECONDS, min: SECONDS}: the longest wait for a slot, virtual seconds."
    )


class HooksExpect(_Model):
    """Prefect state hooks that ran: the scenario's flow run's (not its subflows'), and each task's by name."""

    flow: FlowHooks | None = Field(default=None, description="The scenario's flow run's hooks, by kind.")
    tasks: dict[str, TaskHooks] = Field(default={}, description="Per task name: its hooks that ran, by kind.")


class RunExpect(_Model):
    """What one flow run ends with: the flow's final state, its result and its task runs."""

    flow: Annotated[
        StateMatch | None, BeforeValidator(_state_match, json_schema_input_type=StateName | StateMatch | None)
    ] = Field(default=None, description="The flow's final state: its name (Completed), or {state, type, message}.")
    result: Any = Field(default=UNSET, description="The flow's return value (tuples compare as lists).")
    tasks: dict[
        str, Annotated[tuple[TaskExpect, ...], BeforeValidator(_task_runs, json_schema_input_type=TASK_RUNS_INPUT)]
    ] = Field(
        default={},
        description="Per task name: a state name, {state, type, message, retries, runs}, "
        "or a list of them, one per run in the order runs started.",
    )


class ApiExpect(_Model):
    """What the flow's traffic to Prefect's API was."""

    calls: dict[str, NonNegativeInt] = Field(
        default={},
        description="Per route ('POST /flow_runs/*/set_state'): the requests sent, the client's retries too.",
    )

    @field_validator("calls")
    @classmethod
    def _routes(cls, value: dict[str, int]) -> dict[str, int]:
        for key in value:
            parse_route(key)
        return value


class ServerExpect(_Model):
    """The states Prefect's server recorded (they can differ from what the flow saw after API faults)."""

    flow: Annotated[
        StateMatch | None, BeforeValidator(_state_match, json_schema_input_type=StateName | StateMatch | None)
    ] = Field(default=None, description="The flow run's state on the server.")
    tasks: dict[
        str,
        Annotated[
            StateMatch | None, BeforeValidator(_state_match, json_schema_input_type=StateName | StateMatch | None)
        ],
    ] = Field(
        default={},
        description="Per task name: the state the server holds for its (last) task run; null: the server holds "
        "no run of it (none of its events reached the server).",
    )


class Expect(RunExpect):
    """What the scenario asserts about the outcome (with ``crash:`` or ``reruns``: ``flow``, ``tasks`` and
    ``result`` are the last flow run's, the rest covers every run)."""

    flow_runs: tuple[RunExpect, ...] = Field(
        default=(),
        description="With `crash:` or `reruns`: one entry per flow run in order, each with `flow`, `tasks` and "
        "`result` as `expect` has them.",
    )
    calls: dict[str, NonNegativeInt] = Field(
        default={}, description="Per endpoint (its `request` line): the requests that matched it."
    )
    sqlite: SqliteExpect | None = None
    virtual_time: VirtualTime | None = None
    prefect_api: ApiExpect | None = Field(
        default=None, description="The flow's requests to Prefect's API: {calls: {ROUTE: N}}."
    )
    raises: str | None = Field(
        default=None,
        description="The flow call raises instead of returning a state (Prefect could not start the run): a regex "
        "on 'Type: message'.",
    )

    @field_validator("raises")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _a_regex(value, "raises")

    @model_validator(mode="after")
    def _raises_or_a_state(self) -> Expect:
        if self.raises is not None and self.flow is not None:
            raise ValueError(
                "`raises` says the flow's call raised and `flow` that it returned a state: a run does one; keep one"
            )
        return self

    slots: dict[str, SlotsExpect] = Field(
        default={},
        description="Per limit of `concurrency_limits` (its name): {held_after: N, waited: {max: SECONDS}}.",
    )
    server: ServerExpect | None = Field(
        default=None, description="The states Prefect's server recorded: {flow: STATE, tasks: {NAME: STATE}}."
    )
    hooks: HooksExpect | None = Field(
        default=None,
        description="Prefect state hooks that ran, by kind: "
        "{flow: {on_failure: 1}, tasks: {NAME: {on_completion: 2}}}.",
    )
    invariants: tuple[
        Annotated[Invariant, BeforeValidator(_invariant, json_schema_input_type=INVARIANT_INPUT)], ...
    ] = Field(
        default=(),
        description="Properties of the outcome: completes, no_data_loss, no_duplicates, "
        "{bounded_calls: N} or 'module:function' taking the Outcome.",
    )

    def essentials(self) -> list[str]:
        """What it states of the flow's state, each task's state and retries, the calls per endpoint and the hooks."""
        out = [f"flow.{k}" for k in ("state", "type") if self.flow is not None and getattr(self.flow, k) is not None]
        for name, runs in self.tasks.items():
            never = any(run.runs == 0 for run in runs)  # a task that never ran has no state or retries
            out += [
                f"tasks.{name}.{k}"
                for k in ("state", "retries")
                if never or any(getattr(r, k) is not None for r in runs)
            ]
        for i, run in enumerate(self.flow_runs):
            out += [f"flow_runs[{i}].{key}" for key in Expect(flow=run.flow, tasks=run.tasks).essentials()]
        out += [f"calls[{key}]" for key in self.calls]
        if self.prefect_api is not None:
            out += [f"prefect_api.calls[{key}]" for key in self.prefect_api.calls]
        if self.raises is not None:
            out.append("flow.state")  # how the flow's call ended: raised, instead of a state
        if self.server is not None:
            out += ["server.flow"] * (self.server.flow is not None) + [f"server.tasks.{n}" for n in self.server.tasks]
        for name, slots in self.slots.items():
            out += [f"slots.{name}.{key}" for key in slots.model_dump(exclude_none=True)]
        if self.hooks is not None:
            flow_hooks = self.hooks.flow.model_dump(exclude_none=True) if self.hooks.flow is not None else {}
            out += [f"hooks.flow.{kind}" for kind in flow_hooks]
            for name, counts in self.hooks.tasks.items():
                out += [f"hooks.tasks.{name}.{kind}" for kind in counts.model_dump(exclude_none=True)]
        return out


# -- crash and run again ------------------------------------------------------------

TASK_POINTS = ("before_task", "after_return", "after_commit", "after_task")  # in the order a task run reaches them
CRASH_POINTS = (*TASK_POINTS, "after_call", "at_time")
CRASH_WAYS = ("kill", "terminate", "interrupt")


class TaskPoint(_Model):
    """The N-th run of a task (in the order its runs reach the point)."""

    task: Annotated[str, Field(min_length=1)] = Field(description="The task's name.")
    run: PositiveInt = Field(default=1, description="Which of its runs: 1 for the first.")


class CallPoint(_Model):
    """The n-th request the flow made to an endpoint, once answered."""

    request: Annotated[str, Field(min_length=1)] = Field(description="A declared endpoint's `request` line.")
    n: PositiveInt = Field(default=1, description="Which of its calls: 1 for the first.")


class CrashAt(_Model):
    """Where the process dies: a point of a task run, after a call, or at a virtual time."""

    point: str
    task: str | None = None
    run: int = 1
    request: str | None = None
    n: int = 1
    seconds: float | None = None

    def __str__(self) -> str:
        if self.point == "at_time":
            return f"at_time: {self.seconds:g}"
        if self.point == "after_call":
            return f"after_call: {self.request}" + (f" (call {self.n})" if self.n != 1 else "")
        return f"{self.point}: {self.task}" + (f" (run {self.run})" if self.run != 1 else "")

    def as_yaml(self) -> dict[str, Any]:
        """The form a scenario file writes it in."""
        if self.point == "at_time":
            return {"at_time": self.seconds}
        if self.point == "after_call":
            return {"after_call": {"request": self.request, "n": self.n}}
        return {self.point: self.task if self.run == 1 else {"task": self.task, "run": self.run}}


CRASH_AT_INPUT: Any = (
    dict[Literal[TASK_POINTS], str | TaskPoint]  # type: ignore[valid-type]
    | dict[Literal["after_call"], str | CallPoint]
    | dict[Literal["at_time"], Annotated[float, Field(gt=0, allow_inf_nan=False)]]
)
_CRASH_AT_FORMS: TypeAdapter[Any] = TypeAdapter(CRASH_AT_INPUT)


def _crash_at(value: Any) -> Any:
    if isinstance(value, CrashAt):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(
            f"`at` is one point, as {{after_return: TASK}}, {{after_call: {{request: 'GET URL', n: 1}}}} or "
            f"{{at_time: SECONDS}}; points: {', '.join(CRASH_POINTS)}; got {value!r}"
        )
    ((point, where),) = value.items()
    if point not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {point!r}{did_you_mean(str(point), CRASH_POINTS)}")
    try:
        _read(_CRASH_AT_FORMS, value)
    except _Unfit:
        shape = {
            "after_call": "a declared endpoint's request line, or {request: 'GET URL', n: N}",
            "at_time": "a number of virtual seconds, more than 0 (the run's start is before_task of its first task)",
        }.get(point, "a task's name, or {task: NAME, run: N} for its N-th run")
        raise ValueError(f"`{point}` takes {shape}, got {where!r}") from None
    if point == "at_time":
        return CrashAt(point=point, seconds=float(where))
    if point == "after_call":
        call = CallPoint(request=where) if isinstance(where, str) else CallPoint.model_validate(where)
        return CrashAt(point=point, request=call.request, n=call.n)
    task = TaskPoint(task=where) if isinstance(where, str) else TaskPoint.model_validate(where)
    return CrashAt(point=point, task=task.task, run=task.run)


class Crash(_Model):
    """The process running the flow dies at a point; the flow is then run again (``reruns``)."""

    at: Annotated[CrashAt, BeforeValidator(_crash_at, json_schema_input_type=CRASH_AT_INPUT)] = Field(
        description="Where the process dies: {before_task | after_return | after_commit | after_task: TASK or "
        "{task, run}}, {after_call: {request, n}} or {at_time: SECONDS}."
    )
    how: Annotated[str, _one_of("way to crash", CRASH_WAYS)] = Field(
        default="kill",
        description="kill (SIGKILL: nothing more happens), terminate (SIGTERM, as Prefect handles it) or "
        "interrupt (SIGINT: KeyboardInterrupt).",
    )


CANCEL_WAYS = ("api_only", "runner")


class Cancel(_Model):
    """The flow run is cancelled at a point, as a user cancels it: through Prefect's API."""

    def __str__(self) -> str:
        return f"{self.at} ({self.how})"

    at: Annotated[CrashAt, BeforeValidator(_crash_at, json_schema_input_type=CRASH_AT_INPUT)] = Field(
        description="Where it is cancelled: the points of `crash:` ({after_return: TASK}, {at_time: SECONDS}, ...)."
    )
    how: Annotated[str, _one_of("way to cancel", CANCEL_WAYS)] = Field(
        default="api_only",
        description="api_only: the flow run is set Cancelling through the API, and nothing else is done "
        "(no runner watches it: the flow goes on). runner: the flow is served by Prefect's own Runner, as "
        "flow.serve() serves it, which sees the cancellation, signals the flow's process, runs on_cancellation "
        'and sets the run Cancelled (Prefect 3.9; see the README, "Cancellation").',
    )


# -- the scenario -------------------------------------------------------------------


class StrategyInput(Policy):
    """A strategy as written under a scenario's ``strategies:``: a policy's options and its own ``expect``."""

    expect: Expect | None = Field(
        default=None, description="What must hold under this strategy; replaces the scenario's."
    )


class StrategyCase(_Model):
    """A fault-tolerance strategy to run the scenario under, with its own expectations."""

    policy: Policy
    expect: Expect = Expect()

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        """``{expect: ..., **options}`` under the strategy's name: a preset, or options of its own."""
        if not isinstance(value, dict) or "__name__" not in value:
            return value
        body = dict(value)
        expect = body.pop("expect", None)
        out: dict[str, Any] = {"policy": named_policy(body)}
        if expect is not None:
            out["expect"] = expect
        return out


class Scenario(_Model):
    """One scenario document, validated, with the file and line it came from."""

    name: Annotated[str, Field(min_length=1)] = Field(description="Unique in a run; the pytest item's name.")
    description: str = Field(default="", description="Free text.")
    flow: Annotated[
        str,
        Field(min_length=1),
        WithJsonSchema(
            {"anyOf": [{"enum": list(BUILTIN_FLOWS)}, {"type": "string", "pattern": spec_pattern()}]}, mode="validation"
        ),
    ] = Field(description="A built-in flow's name, or 'package.module:flow_function'.")
    parameters: dict[str, Any] = Field(default={}, description="Keyword arguments of the flow.")
    seed: int = Field(
        default=0, description="Fixes every random draw: chaos, latency, Prefect's retry jitter (default 0)."
    )
    endpoints: tuple[Endpoint, ...] = Field(default=(), description="The mocked HTTP endpoints the flow may call.")
    prefect_api: tuple[ApiEndpoint, ...] = Field(
        default=(),
        description="Faults on the flow's requests to Prefect's own API, per route; other requests go through.",
    )
    events: tuple[EventStep, ...] = Field(
        default=(),
        description="What happens to the events the flow's process sends to Prefect (task-run states travel "
        "there), step by step: pass, drop, disconnect; the last step repeats.",
    )
    functions: tuple[FunctionTarget, ...] = Field(
        default=(),
        description="Faults on in-process calls (a database, a file, any Python function), in the step language.",
    )
    expect: Expect = Field(default=Expect(), description="What must hold after the run.")
    xfail: str | None = Field(default=None, description="Why the scenario must fail its expectations (strict).")
    prefect: str | None = Field(
        default=None,
        description="The Prefect versions the expectations hold for, as a version specifier ('>=3.8'): on another "
        "Prefect the scenario is skipped, saying why.",
    )
    strategies: Annotated[
        dict[str, StrategyCase],
        BeforeValidator(with_names, json_schema_input_type=dict[str, StrategyInput | None]),
        Field(json_schema_extra=strategies_json_schema),
    ] = Field(
        default={},
        description="Run the scenario again under fault-tolerance strategies: a preset's name alone, "
        "or options of your own; each with its own `expect`.",
    )
    transport: Annotated[str, _one_of("transport", TRANSPORTS)] | None = None  # httpx's; other clients: the wire
    crash: Crash | None = Field(
        default=None, description="The process running the flow dies at a chosen point; the flow is run again."
    )
    cancel: Cancel | None = Field(default=None, description="The flow run is cancelled at a chosen point.")
    concurrency_limits: ConcurrencyLimits | None = Field(
        default=None,
        description="Prefect concurrency limits on the server for the scenario's runs: {tag: {TAG: N}, "
        "global: {NAME: N}}; their leases lapse on the virtual clock.",
    )
    reruns: NonNegativeInt | None = Field(
        default=None,
        description="How many times the flow is run again after the first run (default 1 with `crash:`, else 0): "
        "a new flow run with the same parameters, data, result storage, endpoint schedules and clock.",
    )
    rerun_after: Seconds = Field(default=0.0, description="Virtual seconds that pass between two runs.")

    @property
    def runs(self) -> int:
        """How many flow runs the scenario makes: the first, then its reruns."""
        return 1 + (self.reruns if self.reruns is not None else 1 if self.crash is not None else 0)

    _path: Path = PrivateAttr(default=Path("<string>"))
    _line: int = PrivateAttr(default=1)
    _lines: Any = PrivateAttr(default=None)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def line(self) -> int:
        return self._line

    def line_of(self, *loc: str | int) -> int:
        """The source line of a field, e.g. ``line_of("expect", "tasks", "get_stars")``."""
        return line_at(self._lines, loc) or self._line

    def steps(self, key: str = "endpoints") -> list[tuple[tuple[str | int, ...], Step]]:
        """Every step with its place: ``(("endpoints", 0, "responses", 1), step)``, chaos included
        (``key="prefect_api"``: those of the Prefect API routes)."""
        out: list[tuple[tuple[str | int, ...], Step]] = []
        declared: tuple[Endpoint | ApiEndpoint, ...] = self.endpoints if key == "endpoints" else self.prefect_api
        for i, e in enumerate(declared):
            out += [((key, i, "responses", j), s) for j, s in enumerate(e.responses)]
            if e.chaos is not None:
                out += [((key, i, "chaos", "faults", j), s) for j, s in enumerate(e.chaos.faults)]
                out.append(((key, i, "chaos", "otherwise"), e.chaos.otherwise))
        return out

    @field_validator("prefect")
    @classmethod
    def _specifier(cls, value: str | None) -> str | None:
        if value is not None:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                SpecifierSet(value)
            except InvalidSpecifier:
                raise ValueError(f"{value!r} is not a version specifier such as '>=3.8' or '>=3.7,<3.9'") from None
        return value

    def skipped(self) -> str | None:
        """Why the scenario is not run on the installed Prefect (its ``prefect`` range excludes it), or None."""
        if self.prefect is None:
            return None
        from importlib.metadata import version

        from packaging.specifiers import SpecifierSet

        installed = version("prefect")
        if SpecifierSet(self.prefect).contains(installed, prereleases=True):
            return None
        return f"its expectations are for Prefect {self.prefect}; Prefect {installed} is installed"

    def cases(self) -> list[tuple[str, Scenario, Policy | None]]:
        """The scenario as written, then once per listed strategy: (label, scenario, policy)."""
        out: list[tuple[str, Scenario, Policy | None]] = [(self.name, self, None)]
        raw = self._lines.get("strategies", {}) if self._lines is not None else {}
        for name, case in self.strategies.items():
            variant = self.model_copy(update={"expect": case.expect, "strategies": {}})
            variant._lines = raw.get(name, self._lines)
            out.append((f"{self.name}[{name}]", variant, case.policy))
        return out
