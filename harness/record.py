"""Record a real run as a scenario: the live API's answers as steps, expectations from what happened, no secrets.

``record`` runs a flow once on Prefect's real engine with the network open
for the flow's own requests only, whatever its client (httpx, requests,
urllib, aiohttp): every connection it opens reaches the session's loopback
server, which forwards each request to the real host and keeps the exchange
(``harness.run.recording``, ``harness.run.wire.forward``; Prefect's own API
traffic is the session's local server and is never recorded), then
writes a scenario: one endpoint per distinct ``METHOD URL`` (a request
repeated with different answers becomes ordered steps), each answer a step
(status, headers from an allow-list, the body as ``json``, ``text`` or
``body_base64``), and ``expect`` from the run (the flow's state, each task's
state and retries, calls per endpoint, the result when it is plain data).

Secrets never reach the file: request headers are never written, response
headers only from an allow-list, secret query parameters are dropped from
the request line (queries match as a subset, so the endpoint matches
whatever value the flow sends there), secret JSON fields and parameters are
replaced, and every secret value seen (credentials, cookies, dropped query
values) is replaced wherever else it appears. The file is written to a
temporary file beside ``out``, loaded as ``harness validate`` loads it,
replayed once with the API gone, and only then renamed into place.

``connect_to`` (``--connect-to HOST=ADDRESS:PORT``, curl's option) sends the
connections for a host elsewhere while the flow still names the host: the
written endpoints say ``HOST``, so that every client replays them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import socket
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from harness._errors import HarnessError, ScenarioError, UsageError
from harness.checking.verdict import run_scenario
from harness.run.guard import LOOPBACK_NAMES
from harness.run.outcome import Outcome
from harness.run.recording import Exchange, Recording
from harness.run.session import Session
from harness.scenario._yaml import load_documents
from harness.scenario.loader import load_file, validate_document
from harness.scenario.model import METHODS, Scenario, Step
from harness.scenario.problems import MAX_BYTES
from harness.scenario.writer import dump, plain, step_yaml

DEFAULT_MAX_BODY = 256 * 1024
REDACTED = "REDACTED"
KEPT_HEADERS = ("content-type", "retry-after", "etag", "location")
RATE_LIMIT_HEADER = re.compile(r"(x-)?(rate-?limit|ratelimit)(-.*)?")  # x-ratelimit-remaining, ratelimit-policy, ...
SECRET_PARAMS = frozenset(
    {
        "token",
        "key",
        "api_key",
        "apikey",
        "api-key",
        "access_token",
        "auth",
        "sig",
        "signature",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
    }
)
SECRET_SUFFIXES = ("_token", "-token", "_key", "-key", "_secret", "-secret", "_password", "_signature")
SECRET_FIELDS = frozenset(
    {"access_token", "refresh_token", "id_token", "client_secret", "password", "secret", "api_key", "apikey"}
)
SECRET_HEADER_WORDS = (
    "authorization",
    "cookie",
    "token",
    "secret",
    "api-key",
    "apikey",
    "auth",
    "signature",
    "session",
)
UNREACHABLE = ("ConnectError", "ConnectTimeout")  # the host is wrong or down, as opposed to a failure on the way
MIN_SCRUBBED = 6  # a secret value shorter than this is not searched for elsewhere (it would spoil ordinary data)


@dataclass(frozen=True, slots=True)
class Recorded:
    """A written recording: where, how many requests and endpoints, what the run did, and the notes in its header."""

    path: Path
    requests: int
    endpoints: int
    flow_state: str
    notes: tuple[str, ...]
    document: dict[str, Any]


@dataclass(slots=True)
class _Secrets:
    """The names to redact and every secret value seen, to be replaced wherever it appears."""

    names: frozenset[str]
    values: set[str] = field(default_factory=set)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # request line -> query parameters dropped

    def param(self, name: str) -> bool:
        low = name.lower()
        return low in SECRET_PARAMS or low.endswith(SECRET_SUFFIXES) or low in self.names

    def header(self, name: str) -> bool:
        low = name.lower()
        return any(word in low for word in SECRET_HEADER_WORDS) or low in self.names

    def json_field(self, name: str) -> bool:
        return name.lower() in SECRET_FIELDS or name.lower() in self.names

    def keep(self, value: str) -> None:
        if len(value) >= MIN_SCRUBBED:
            self.values.add(value)


def record(
    session: Session,
    flow: str,
    parameters: dict[str, Any],
    out: str | Path,
    *,
    name: str | None = None,
    redact: Sequence[str] = (),
    max_body: int = DEFAULT_MAX_BODY,
    connect_to: Sequence[str] = (),
    force: bool = False,
    command: str = "",
) -> Recorded:
    """Run ``flow`` once against the live API and write what happened to ``out`` as a scenario.

    Raises ``UsageError`` (nothing written) when ``out`` exists without
    ``force``, the flow, its parameters or a ``connect_to`` are invalid, a
    host cannot be reached, the flow sends no request or opens a connection
    that cannot be recorded, or the written scenario would not replay as the
    run went.
    """
    out = Path(out)
    _refuse_existing(out, force)
    if max_body < 1:
        raise UsageError(f"{{max_body}} must be at least 1 byte, got {max_body}", "max_body")
    pins = connect_targets(connect_to)
    secrets = _Secrets(frozenset(n.lower() for n in redact))
    scenario = _start(flow, parameters, name, out)
    made: list[Recording] = []

    def recording(*args: Any) -> Recording:
        made.append(Recording(*args, connect_to=pins))
        return made[0]

    outcome = session.run(scenario, real_time=True, responder=recording)
    exchanges = made[0].exchanges
    for e in exchanges:
        _keep_secrets(e, secrets)
    try:
        _refuse_bad_run(flow, outcome, exchanges, secrets)
    except UsageError as exc:
        raise UsageError(_scrubbed(str(exc), secrets)) from None
    document, notes = _document(scenario, outcome, exchanges, secrets, max_body)
    document, notes = _scrubbed(document, secrets), _scrubbed(notes, secrets)
    path = _write_verified(session, document, notes, out, force, _scrubbed(command, secrets))
    return Recorded(path, len(exchanges), len(document["endpoints"]), outcome.flow.name, tuple(notes), document)


def connect_targets(values: Sequence[str]) -> dict[str, tuple[str, int]]:
    """``HOST=ADDRESS:PORT`` values as ``{host: (IPv4 address, port)}``; a name for ADDRESS is resolved now."""
    targets: dict[str, tuple[str, int]] = {}
    for value in values:
        host, equals, where = value.partition("=")
        address, colon, port = where.rpartition(":")
        shape = f"{{connect_to}} {value!r}: expected HOST=ADDRESS:PORT, e.g. api.example.com=127.0.0.1:8443"
        if not (equals and colon and host.strip() and address.strip()):
            raise UsageError(shape, "connect_to")
        if any(c in host for c in ":/@ ") or host.strip().lower() in LOOPBACK_NAMES:
            raise UsageError(f"{shape}; HOST is a host name as the flow's URLs write it, not {host!r}", "connect_to")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"{shape}; the port {port!r} is not a port number", "connect_to")
        try:
            (first, *_) = socket.getaddrinfo(address.strip("[]"), int(port), socket.AF_INET, socket.SOCK_STREAM)
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"{{connect_to}} {value!r}: cannot resolve {address!r} to an IPv4 address ({exc})", "connect_to"
            ) from None
        targets[host.strip().lower().rstrip(".")] = (str(first[4][0]), int(port))
    return targets


def _refuse_existing(out: Path, force: bool) -> None:
    if out.is_dir():
        raise UsageError(f"{out} is a folder; {{out}} names the scenario file to write", "out")
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass {{force}} to overwrite it", "force")


def _start(flow: str, parameters: dict[str, Any], name: str | None, out: Path) -> Scenario:
    """The scenario to record, checked as the loader checks a file: the flow imports, the parameters fit."""
    default = f"{flow.rpartition(':')[2]} as recorded"
    text = dump({"name": name or default, "flow": flow, "parameters": parameters})
    try:
        ((line, raw),) = load_documents(text, str(out))
        return validate_document(raw, out, text, line)
    except ScenarioError as exc:
        first = exc.first
        raise UsageError(f"{first.field}: {first.message}" if first.field else first.message) from None


def _refuse_bad_run(flow: str, outcome: Outcome, exchanges: Sequence[Exchange], secrets: _Secrets) -> None:
    """A run that cannot become a scenario: an unreachable host, a connection not recordable, or no request at all."""
    for e in exchanges:
        if e.error is not None:
            line = _request_line(e.method, e.url, secrets)
            if e.error.startswith(UNREACHABLE):
                raise UsageError(f"could not reach {line} ({e.error}): is the host right and the API up?")
            raise UsageError(f"{line} failed while recording ({e.error}): record again when the API answers")
        if e.method not in METHODS:
            raise UsageError(f"the flow sent a {e.method} request; a scenario declares {', '.join(METHODS)} only")
    if outcome.blocked:
        raise UsageError(f"the flow made {outcome.blocked[0]}, which cannot be recorded")
    if not exchanges:
        state = outcome.flow
        if state.type != "COMPLETED":
            why = f": {state.message}" if state.message else ""
            raise UsageError(f"flow {flow!r} ended {state.name} before sending any request{why}")
        raise UsageError(f"flow {flow!r} completed without sending any request: there is nothing to record")


# -- the scenario document ---------------------------------------------------------


def _document(
    scenario: Scenario, outcome: Outcome, exchanges: Sequence[Exchange], secrets: _Secrets, max_body: int
) -> tuple[dict[str, Any], list[str]]:
    """The scenario as YAML writes it, and the notes for its header."""
    notes: list[str] = []
    lines = [_request_line(e.method, e.url, secrets) for e in exchanges]
    answers: dict[str, list[Step]] = {}
    for line, e in zip(lines, exchanges, strict=True):
        answers.setdefault(line, []).append(_answer(e, line, secrets, max_body, notes))
    doc: dict[str, Any] = {
        "name": scenario.name,
        "description": (
            "Recorded by `harness record` from one live run: each endpoint's answers in the order the API gave "
            "them, headers from an allow-list, secrets left out. `harness explore` injects faults before them."
        ),
        "flow": scenario.flow,
    }
    if scenario.parameters:
        doc["parameters"] = _redact_fields(plain(scenario.parameters), secrets)
    doc["endpoints"] = [{"request": line, "responses": _steps(answers[line])} for line in _ordered(list(answers))]
    doc["expect"] = _expect(outcome, Counter(lines), max_body, notes)
    for line, names in secrets.dropped.items():
        notes.append(
            f"{line}: query parameter(s) {', '.join(sorted(set(names)))} dropped: the endpoint matches whatever "
            "value the flow sends there (a query matches as a subset)"
        )
    return doc, notes


def _request_line(method: str, url: str, secrets: _Secrets) -> str:
    """``METHOD URL`` with the query kept, less its secret parameters (and any user:password in the URL)."""
    parts = urlsplit(url)
    kept, dropped = [], []
    for segment in filter(None, parts.query.split("&")):
        key, _, value = segment.partition("=")
        if secrets.param(unquote_plus(key)):
            dropped.append(unquote_plus(key))
            secrets.keep(unquote_plus(value))
            secrets.keep(value)  # as sent, still percent-encoded: an echoed link carries it so
        else:
            kept.append(segment)
    host = parts.netloc.rpartition("@")[2]
    line = f"{method} {urlunsplit((parts.scheme, host, parts.path or '/', '&'.join(kept), ''))}"
    if dropped:
        secrets.dropped.setdefault(line, []).extend(dropped)
    return line


def _keep_secrets(exchange: Exchange, secrets: _Secrets) -> None:
    """Note every secret value the exchange carries: credentials, cookies, secret headers, a URL's password."""
    for name, value in exchange.request_headers:
        if secrets.header(name):
            secrets.keep(value)
            scheme, _, credential = value.partition(" ")
            secrets.keep(credential)
            if scheme.lower() == "basic":
                secrets.keep(_decoded(credential).rpartition(":")[2])
            for cookie in value.split(";") if name.lower() == "cookie" else ():
                secrets.keep(cookie.partition("=")[2].strip())
    for name, value in exchange.headers:
        if name.lower() == "set-cookie":
            secrets.keep(value.partition(";")[0].partition("=")[2].strip())
        elif secrets.header(name):
            secrets.keep(value)
    password = urlsplit(exchange.url).password
    if password:
        secrets.keep(password)


def _decoded(credential: str) -> str:
    try:
        return base64.b64decode(credential, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _answer(exchange: Exchange, line: str, secrets: _Secrets, max_body: int, notes: list[str]) -> Step:
    """One answer as a step: its status, allow-listed headers and body."""
    headers: dict[str, list[str]] = {}
    for name, value in exchange.headers:
        low = name.lower()
        if (low in KEPT_HEADERS or RATE_LIMIT_HEADER.fullmatch(low)) and low not in secrets.names:
            headers.setdefault(low, []).append(_redacted_location(value, secrets) if low == "location" else value)
    step: dict[str, Any] = {"status": exchange.status, "headers": {k: ", ".join(v) for k, v in headers.items()}}
    step.update(_body(exchange.body, headers.get("content-type", [""])[0], line, secrets, max_body, notes))
    return Step.model_validate(step)


def _redacted_location(value: str, secrets: _Secrets) -> str:
    """A redirect's target with its secret query parameters dropped, as the request line drops them."""
    parts = urlsplit(value)
    kept = []
    for segment in filter(None, parts.query.split("&")):
        key, _, secret = segment.partition("=")
        if secrets.param(unquote_plus(key)):
            secrets.keep(unquote_plus(secret))
            secrets.keep(secret)
        else:
            kept.append(segment)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "&".join(kept), parts.fragment))


def _body(
    raw: bytes, content_type: str, line: str, secrets: _Secrets, max_body: int, notes: list[str]
) -> dict[str, Any]:
    """The body as ``json`` when it parses, else ``text``, else ``body_base64``; JSON lists trimmed to ``max_body``."""
    if not raw:
        return {}
    charset = _charset(content_type)
    if charset not in ("", "utf-8", "utf8") and not raw.isascii():
        return {"body_base64": base64.b64encode(raw).decode()}  # byte-exact: the text is not UTF-8
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(raw).decode()}
    value = _parsed(text, content_type)
    if value is _NOT_JSON:
        if len(raw) > max_body:
            notes.append(f"{line}: a {len(raw)}-byte text body is over --max-body {max_body}: kept whole")
        return {"text": text}
    value = _redact_fields(value, secrets)
    trimmed, trims = _trim(value, max_body)
    notes.extend(f"{line}: JSON body trimmed to fit --max-body {max_body}: {t}" for t in trims)
    return {"json": trimmed}


def _charset(content_type: str) -> str:
    match = re.search(r"charset=\"?([\w.:-]+)", content_type, re.IGNORECASE)
    return match.group(1).lower() if match else ""


_NOT_JSON: Any = object()


def _parsed(text: str, content_type: str) -> Any:
    """The JSON value of a body: any JSON under a JSON content type, else only an object or a list."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)  # NaN and Infinity: not JSON, and no replay could serve them

    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError:
        return _NOT_JSON
    if "json" in content_type.lower() or isinstance(value, dict | list):
        return value
    return _NOT_JSON


def _redact_fields(value: Any, secrets: _Secrets) -> Any:
    """``value`` with every secret field (``access_token``, ``--redact`` names) replaced, its value kept to scrub."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and secrets.json_field(key) and item is not None:
                for scalar in _scalars(item):
                    secrets.keep(str(scalar))
                out[key] = REDACTED
            else:
                out[key] = _redact_fields(item, secrets)
        return out
    if isinstance(value, list):
        return [_redact_fields(item, secrets) for item in value]
    return value


def _scalars(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from _scalars(item)
    elif value is not None and not isinstance(value, bool):
        yield value


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


Path_ = tuple[str | int, ...]  # where a list sits in a JSON value: keys and indices


def _trim(value: Any, limit: int) -> tuple[Any, list[str]]:
    """``value`` with its largest lists halved until it fits ``limit`` bytes; what was cut, per list."""
    cuts: dict[Path_, tuple[int, int]] = {}  # where -> (items at first, items kept)
    left = ""
    while _size(value) > limit:
        found = max(_lists(value, ()), key=lambda found: _size(found[1]), default=None)
        if found is None:
            left = f"no list left to trim: it is {_size(value)} bytes"
            break
        where, items = found
        keep = max(len(items) // 2, 1)
        value = _swapped(value, where, items[:keep])
        cuts[where] = (cuts.get(where, (len(items), 0))[0], keep)
    return value, [f"{_shown(w)}: kept {k} of {n} items" for w, (n, k) in cuts.items()] + ([left] if left else [])


def _lists(value: Any, where: Path_) -> Iterable[tuple[Path_, list[Any]]]:
    """Every list of more than one item in ``value``, with where it sits."""
    if isinstance(value, list):
        if len(value) > 1:
            yield where, value
        for i, item in enumerate(value):
            yield from _lists(item, (*where, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _lists(item, (*where, key))


def _swapped(value: Any, where: Path_, new: list[Any]) -> Any:
    """A copy of ``value`` with the list at ``where`` replaced by ``new``."""
    if not where:
        return new
    head, rest = where[0], where[1:]
    if isinstance(value, list):
        return [_swapped(item, rest, new) if i == head else item for i, item in enumerate(value)]
    return {k: _swapped(item, rest, new) if k == head else item for k, item in value.items()}


def _shown(where: Path_) -> str:
    """``$.hits.hits``, ``$[0].items``: where a list sits, as JSONPath writes it."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where)


def _steps(answers: Sequence[Step]) -> list[dict[str, Any]]:
    """Answers in order, consecutive equal ones as one step with ``times``."""
    out: list[dict[str, Any]] = []
    for answer in answers:
        step = step_yaml(answer)
        if out and {k: v for k, v in out[-1].items() if k != "times"} == step:
            out[-1]["times"] = out[-1].get("times", 1) + 1
        else:
            out.append(step)
    return out


def _ordered(lines: list[str]) -> list[str]:
    """Request lines in the order first sent, except that a line precedes those whose query is a subset of its own.

    The first matching endpoint wins and a query matches as a subset, so
    ``GET /items`` declared before ``GET /items?page=2`` would answer both.
    """
    out: list[str] = []
    for line in lines:
        at = next((i for i, earlier in enumerate(out) if _covers(earlier, line)), len(out))
        out.insert(at, line)
    return out


def _covers(general: str, specific: str) -> bool:
    """Whether an endpoint ``general`` would match every request ``specific`` matches."""
    (m1, u1), (m2, u2) = general.split(" ", 1), specific.split(" ", 1)
    p1, p2 = urlsplit(u1), urlsplit(u2)
    q1, q2 = set(filter(None, p1.query.split("&"))), set(filter(None, p2.query.split("&")))
    return m1 == m2 and p1._replace(query="") == p2._replace(query="") and q1 < q2


def _expect(outcome: Outcome, calls: Counter[str], max_body: int, notes: list[str]) -> dict[str, Any]:
    """What happened: the flow's state, each task's state and retries, calls per endpoint, the result."""
    expect: dict[str, Any] = {"flow": outcome.flow.name}
    if outcome.flow.type == "COMPLETED":
        if not _isplain(outcome.result):
            notes.append(f"the result ({type(outcome.result).__name__}) is not plain data: not asserted")
        elif _size(outcome.result) > max_body:
            notes.append(f"the result is over --max-body {max_body} bytes: not asserted")
        else:
            expect["result"] = plain(outcome.result)
    tasks: dict[str, Any] = {}
    for task in outcome.tasks:
        tasks.setdefault(task.name, []).append({"state": task.state.name, "retries": task.retries})
    if tasks:
        expect["tasks"] = {name: _runs(runs) for name, runs in tasks.items()}
    expect["calls"] = dict(calls)
    return expect


def _runs(runs: list[dict[str, Any]]) -> Any:
    """One run as a mapping; several alike as ``{runs: N, ...}``; else the list, in the order they started."""
    if len(runs) == 1:
        return runs[0]
    if all(r == runs[0] for r in runs):
        return {"runs": len(runs), **runs[0]}
    return runs


def _isplain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_isplain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _isplain(v) for k, v in value.items())
    return False


def _scrubbed(value: Any, secrets: _Secrets) -> Any:
    """``value`` with every secret value seen replaced by ``REDACTED``, wherever it appears."""
    if isinstance(value, str):
        for secret in sorted(secrets.values, key=len, reverse=True):
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, list):
        return [_scrubbed(v, secrets) for v in value]
    if isinstance(value, dict):
        return {_scrubbed(k, secrets): _scrubbed(v, secrets) for k, v in value.items()}
    return value


# -- writing ----------------------------------------------------------------------


def _write_verified(
    session: Session,
    document: dict[str, Any],
    notes: list[str],
    out: Path,
    force: bool,
    command: str,
) -> Path:
    """Write beside ``out``, load it as ``harness validate`` does, replay it, then rename it into place.

    When only the result differs on replay, ``expect.result`` is dropped from ``document`` (with a note).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".recording")
    os.close(handle)
    temp = Path(name)
    try:
        failures = _replayed(session, temp, document, notes, command)
        if failures and all(f.startswith("expect.result") for f in failures):
            notes.append("the result differed on replay (the flow's result is not its answers alone): not asserted")
            document["expect"].pop("result")
            failures = _replayed(session, temp, document, notes, command)
        if failures:
            raise UsageError(f"the recording does not replay as the run went: {'; '.join(failures)}")
        _refuse_existing(out, force)
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    return out


def _replayed(session: Session, temp: Path, document: dict[str, Any], notes: list[str], command: str) -> list[str]:
    """Write the file, load it, replay it with the API gone; the mismatches, as ``field: expected, observed``."""
    header = [f"# {command or 'harness record'}", *(f"# note: {n}" for n in notes)]
    text = "\n".join(header) + "\n" + dump(document)
    if len(text.encode()) > MAX_BYTES:
        raise UsageError(
            f"the recording is {len(text.encode())} bytes, over the 1 MiB limit of scenario files: lower --max-body"
        )
    temp.write_text(text)
    try:
        (loaded,) = load_file(temp)
    except ScenarioError as exc:
        raise UsageError(f"the recording is not a valid scenario: {exc.first.field}: {exc.first.message}") from None
    if isinstance(loaded, ScenarioError):
        raise UsageError(f"the recording is not a valid scenario: {loaded.first.field}: {loaded.first.message}")
    try:
        result = run_scenario(session, loaded)
    except HarnessError as exc:
        raise UsageError(f"the recording could not be replayed: {exc}") from None
    for refused in (m.observed for m in result.mismatches if m.field == "network"):
        if str(refused).startswith("a connection to"):
            # An endpoint on an address is served to httpx (respx) only: other clients are redirected by host name.
            raise UsageError(
                f"the recording does not replay: a client other than httpx made {refused}, an address, and a "
                "replay serves other clients by host name only; name the API by a host in the flow's parameters "
                "and pass --connect-to HOST=ADDRESS:PORT"
            )
        raise UsageError(f"the recording does not replay: the replay refused {refused}")
    return [str(m) for m in result.mismatches] + ([result.error] if result.error else [])
