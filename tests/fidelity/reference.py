"""The reference side of the fidelity check: Prefect's own test harness, plain respx, real time.

``python -m tests.fidelity.reference OUT.json`` runs every case of
``tests.fidelity.cases`` in one ``prefect_test_harness()`` session and writes
``{case name: {"flow", "tasks", "calls", "unmatched", "result", "error"}}``.
It uses none of the harness's code: task run states and run counts are read
back from the Prefect API once the client's events are flushed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

# No Prefect setting of the calling process (a harness session's, say) leaks in: the reference
# starts from Prefect's defaults, plus the client settings of a harness session, in the
# environment before Prefect is imported. PREFECT_HOME is private: nothing lands in ~/.prefect,
# and it is removed when the reference exits.
_HOME = tempfile.mkdtemp(prefix="fidelity-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for _key in [k for k in os.environ if k.startswith("PREFECT_")]:
    del os.environ[_key]
os.environ.update(
    {
        "PREFECT_HOME": _HOME,
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # A task run refused a tag limit's slot asks again after at most this long (Prefect: 30 s): real time.
        "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": "0.2",
    }
)

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import contextvars  # noqa: E402
import fnmatch  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Generator  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qsl, urlsplit  # noqa: E402

import httpx  # noqa: E402
import respx  # noqa: E402
from prefect import Task  # noqa: E402
from prefect._internal.concurrency.cancellation import CancelledError as PrefectCancelled  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import (  # noqa: E402
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentTaskRunId,
)
from prefect.context import TaskRunContext  # noqa: E402
from prefect.events.worker import EventsWorker  # noqa: E402
from prefect.settings import (  # noqa: E402
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_LOGGING_TO_API_ENABLED,
    PREFECT_RESULTS_LOCAL_STORAGE_PATH,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness  # noqa: E402
from prefect.utilities.asyncutils import run_coro_as_sync  # noqa: E402

from tests.fidelity import hook_log  # noqa: E402
from tests.fidelity.cases import CASES  # noqa: E402
from tests.fidelity.hook_log import counted  # noqa: E402
from tests.fidelity.step_cases import STEP_CASES  # noqa: E402

# The same exception, with the same message, that the harness raises for each fault (the fault provoked by hand).
FAULTS: dict[str, tuple[type[httpx.TransportError], str]] = {
    "connect_timeout": (httpx.ConnectTimeout, "timed out"),
    "read_timeout": (httpx.ReadTimeout, "The read operation timed out"),
    "write_timeout": (httpx.WriteTimeout, "The write operation timed out"),
    "pool_timeout": (httpx.PoolTimeout, "timed out"),
    "connect_error": (httpx.ConnectError, "[Errno 111] Connection refused"),
    "connection_reset": (httpx.ReadError, "[Errno 104] Connection reset by peer"),
    "remote_protocol_error": (httpx.RemoteProtocolError, "Server disconnected without sending a response."),
}


class UnmatchedRequest(httpx.TransportError):
    """What a request no endpoint declares raises into the flow (as the harness's own does, by name and message)."""


SETTLE_S = 10.0  # bound on waiting for the API to hear every task state
STARTUP_TIMEOUT_S = 180  # bound on Prefect's test server starting
STEP_KEYS = {"status", "json", "text", "headers", "fault", "times", "latency", "malformed", "until"}

# The language's own bodies (README, "Malformed bodies"): a 502 page as nginx sends it, and the JSON
# a malformed step spoils when it has none of its own.
HTML_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
DEFAULT_JSON = {"items": [{"id": 1}, {"id": 2}], "total": 2}


def draw_latency(spec: Any, rng: random.Random) -> float:
    """A step's latency as the language defines it: seconds, ``{uniform: [a, b]}`` or ``{lognormal: {...}}``."""
    if isinstance(spec, (int, float)):
        return float(spec)
    if "uniform" in spec:
        low, high = spec["uniform"]
        return float(rng.uniform(low, high))
    return float(spec["lognormal"]["median"] * rng.lognormvariate(0.0, spec["lognormal"]["sigma"]))


def describe(step: dict[str, Any]) -> str:
    """What a step serves, in the words of a scenario's report."""
    if "fault" in step:
        return str(step["fault"])
    if "malformed" in step:
        return f"malformed {step['malformed']}" + (f" ({step['status']})" if "status" in step else "")
    return str(step.get("status", 200))


class Endpoint:
    """One endpoint's steps, in the language's order: scripted (``times`` each, or every call ``until`` a
    second since the run started), then chaos drawn from the endpoint's seeded generator, else the last
    repeats; calls counted."""

    def __init__(self, spec: dict[str, Any], index: int, seed: int, started: list[float]) -> None:
        self.request = spec["request"]
        method, url = self.request.split()
        parts = urlsplit(url)
        self.method, self.base = method, f"{parts.scheme}://{parts.netloc}{parts.path}"
        self.query = set(parse_qsl(parts.query, keep_blank_values=True))
        self.steps: list[dict[str, Any]] = []
        for step in [*spec.get("responses", []), *spec.get("chaos", {}).get("faults", [])]:
            unknown = set(step) - STEP_KEYS
            if unknown:
                raise ValueError(f"{self.request}: step keys outside the reference's subset: {sorted(unknown)}")
        for step in spec.get("responses", []):
            self.steps += [step] * (1 if "until" in step else int(step.get("times", 1)))
        self.chaos = spec.get("chaos")
        self.rng = random.Random(f"{seed}:{index}")  # the language's seeding: endpoint i draws from "{seed}:{i}"
        self.started = started  # when the flow was called (monotonic), set per run
        self.calls = 0
        self.served = 0

    def matches(self, request: httpx.Request) -> bool:
        url = request.url
        base = f"{url.scheme}://{url.netloc.decode()}{url.path}"
        got = set(parse_qsl(url.query.decode(), keep_blank_values=True))
        return request.method == self.method and base == self.base and self.query <= got

    def next_step(self) -> dict[str, Any]:
        now = time.monotonic() - self.started[0]
        steps = self.steps
        while self.served < len(steps) - 1 and "until" in steps[self.served] and now >= steps[self.served]["until"]:
            self.served += 1  # the window has closed
        if self.served < len(steps) and "until" in steps[self.served]:
            if now < steps[self.served]["until"] or self.served == len(steps) - 1:
                return steps[self.served]
            self.served += 1
        if self.served < len(steps):
            step = steps[self.served]
        elif self.chaos is not None:
            faulted = self.rng.random() < self.chaos["rate"]
            step = self.rng.choice(self.chaos["faults"]) if faulted else self.chaos["otherwise"]
        else:
            step = steps[-1]
        self.served += 1
        return step


ASYNC_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("reference_async_request", default=False)


def _drive(serving: Generator[float, None, httpx.Response]) -> httpx.Response:
    """Run a call's serving generator, sleeping each wait it yields in this thread."""
    try:
        seconds = next(serving)
        while True:
            try:
                time.sleep(seconds)
            except BaseException as exc:  # a timeout raised into the sleep: the serving sees it where it waits
                seconds = serving.throw(exc)
                continue
            seconds = serving.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _adrive(serving: Generator[float, None, httpx.Response]) -> httpx.Response:
    """``_drive`` in a coroutine: each wait awaited."""
    try:
        seconds = next(serving)
        while True:
            try:
                await asyncio.sleep(seconds)
            except BaseException as exc:
                seconds = serving.throw(exc)
                continue
            seconds = serving.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class Router:
    """A plain respx router: Prefect's API passes through, then one route per endpoint, then fail closed."""

    def __init__(self, endpoints: list[dict[str, Any]], api_url: str, seed: int = 0) -> None:
        self.started = [time.monotonic()]
        self.endpoints = [Endpoint(e, i, seed, self.started) for i, e in enumerate(endpoints)]
        self.bytes_rng = random.Random(f"{seed}:bytes")  # random_bytes bodies, one generator for the run
        self.unmatched: list[str] = []
        self.log: list[tuple[Any, str, str]] = []  # (task run id or None, endpoint, what it served), in call order
        self.lock = threading.Lock()
        self.slept = 0.0  # seconds of latency slept for real, in all
        self.last: dict[Any, dict[str, Any]] = {}  # task run id -> the step it was last served
        self.mock = respx.mock(assert_all_called=False)
        self.mock.route(url__startswith=api_url).pass_through()
        for endpoint in self.endpoints:
            self.mock.route(method=endpoint.method, url__startswith=endpoint.base).mock(side_effect=self._side_effect)
        self.mock.route().mock(side_effect=self._unmatched)
        handler = self.mock.async_handler

        async def async_handler(request: httpx.Request) -> httpx.Response:
            token = ASYNC_REQUEST.set(True)  # an AsyncClient's request
            try:
                return await handler(request)
            finally:
                ASYNC_REQUEST.reset(token)

        self.mock.async_handler = async_handler  # type: ignore[method-assign]

    def _side_effect(self, request: httpx.Request) -> Any:
        """Serve a call; an AsyncClient's is served by a coroutine (respx awaits it), so that its latency is
        awaited and the event loop goes on meanwhile, as it would for a real answer."""
        served = self._serve(request)
        if ASYNC_REQUEST.get():
            return _adrive(served)
        return _drive(served)

    def _serve(self, request: httpx.Request) -> Generator[float, None, httpx.Response]:
        """The call's answer, yielding each real wait (seconds) to the caller, which sleeps it."""
        context = TaskRunContext.get()  # the task run whose thread (or coroutine) sends the request
        who = context.task_run.id if context is not None else None
        step, candidate, latency = self.take(request)
        if candidate is None:
            return self._unmatched(request)
        served = describe(step)
        if who is not None:
            self.last[who] = step
        try:
            if latency:
                read = (request.extensions.get("timeout") or {}).get("read")
                timeout = getattr(getattr(context, "task", None), "timeout_seconds", None)
                try:
                    if read is not None and latency > read:
                        yield read  # the client gives up first
                        with self.lock:
                            self.slept += read
                        served = f"read_timeout (latency {latency:g} s > client timeout {read:g} s)"
                        raise httpx.ReadTimeout("The read operation timed out", request=request)
                    yield latency
                    with self.lock:
                        self.slept += latency
                except (TimeoutError, PrefectCancelled):  # the task's timeout_seconds ended the wait
                    served = f"task timeout_seconds={timeout} (latency {latency:g} s)"
                    raise
            if "fault" in step:
                cls, message = FAULTS[step["fault"]]
                raise cls(message, request=request)
            return self.answer(step)
        finally:
            with self.lock:
                self.log.append((who, candidate.request, served))

    def take(self, request: httpx.Request) -> tuple[dict[str, Any], Endpoint | None, float]:
        """The step of the first declared endpoint that matches, that endpoint and the latency drawn."""
        with self.lock:
            candidate = next((e for e in self.endpoints if e.matches(request)), None)
            if candidate is None:
                return {}, None, 0.0
            step = candidate.next_step()
            candidate.calls += 1
            return step, candidate, draw_latency(step["latency"], candidate.rng) if "latency" in step else 0.0

    def note_unmatched(self, request: httpx.Request) -> None:
        with self.lock:
            self.unmatched.append(f"{request.method} {request.url}")

    def answer(self, step: dict[str, Any]) -> httpx.Response:
        status, headers = step.get("status", 200), dict(step.get("headers", {}))
        kind = step.get("malformed")
        if kind is None:
            if "json" in step:
                return httpx.Response(status, json=step["json"], headers=headers)
            if "text" in step:
                return httpx.Response(status, text=step["text"], headers=headers)
            return httpx.Response(status, headers=headers)
        headers = {"content-type": "application/json", **headers}
        if kind == "truncated_json":
            whole = json.dumps(step.get("json", DEFAULT_JSON)).encode()
            body = whole[: max(len(whole) // 2, 1)]
        elif kind == "invalid_json":
            body = b'{"items": [1, 2,, 3], "total": }'
        elif kind == "html":
            headers["content-type"] = "text/html"
            body = HTML_PAGE.encode()
        elif kind == "empty_body":
            body = b""
        elif kind == "wrong_content_type":
            headers["content-type"] = "text/html; charset=utf-8"
            body = json.dumps(step.get("json", DEFAULT_JSON)).encode()
        else:  # random_bytes
            with self.lock:
                body = bytes(self.bytes_rng.getrandbits(8) for _ in range(64))
            headers["content-type"] = "application/octet-stream"
        return httpx.Response(status, content=body, headers={**headers, **step.get("headers", {})})

    def _unmatched(self, request: httpx.Request) -> httpx.Response:
        self.note_unmatched(request)
        raise UnmatchedRequest(f"harness: no endpoint declared for {request.method} {request.url}", request=request)

    def counts(self) -> dict[str, int]:
        return {e.request: e.calls for e in self.endpoints}


GARBAGE_STATUS = b"HTTP/1.1 OK-ISH not a status line\r\n\r\n"  # the language's remote_protocol_error on a socket


class WireServer:
    """A plain loopback HTTP server serving a router's endpoints on real sockets, for clients respx cannot see
    (requests, urllib): the declared hosts resolve to it. Each answer closes its connection; faults are
    committed as the language defines them (an RST, a close before any answer, a body shorter than its
    Content-Length, a garbage status line, a stall until the client's own timeout)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.hosts = {urlsplit(e.request.split()[1]).hostname for e in router.endpoints}
        self.who: dict[int, Any] = {}  # client port -> the task run that connected
        self.ended = threading.Event()

    @contextlib.contextmanager
    def serving(self) -> Any:
        real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
        server = self

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host in server.hosts:
                return real_getaddrinfo("127.0.0.1", server.port, *args, **kwargs)
            return real_getaddrinfo(host, port, *args, **kwargs)

        def connect(sock: socket.socket, address: Any) -> None:
            real_connect(sock, address)
            if isinstance(address, tuple) and address[:2] == ("127.0.0.1", server.port):
                context = TaskRunContext.get()
                server.who[sock.getsockname()[1]] = context.task_run.id if context is not None else None

        threading.Thread(target=self._accept, daemon=True).start()
        socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect  # type: ignore[method-assign]
        try:
            yield self
        finally:
            socket.getaddrinfo, socket.socket.connect = real_getaddrinfo, real_connect  # type: ignore[method-assign]
            self.ended.set()
            self.sock.close()

    def _accept(self) -> None:
        while not self.ended.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer[1]), daemon=True).start()

    def _serve(self, conn: socket.socket, client_port: int) -> None:
        with contextlib.closing(conn):
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = dict(line.split(": ", 1) for line in header_lines)
            length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
            while len(body) < length:
                body += conn.recv(65536)
            host = next(v for k, v in headers.items() if k.lower() == "host").split(":")[0]
            request = httpx.Request(method, f"http://{host}{target}")
            step, candidate, latency = self.router.take(request)
            who = self.who.get(client_port)
            if candidate is None:
                self.router.note_unmatched(request)
                text = f"harness: no endpoint declared for {method} {request.url}"
                conn.sendall(self._bytes(httpx.Response(501, text=text)))
                return
            with self.router.lock:
                self.router.log.append((who, candidate.request, describe(step)))
            if latency:
                time.sleep(latency)
            fault = step.get("fault")
            response = self.router.answer(step) if not fault or fault == "partial_body" else None
            if fault is None:
                conn.sendall(self._bytes(response))
            elif fault == "connection_reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif fault == "close_before_response":
                conn.shutdown(socket.SHUT_WR)
            elif fault == "remote_protocol_error":
                conn.sendall(GARBAGE_STATUS)
            elif fault == "partial_body":
                assert response is not None
                whole = self._bytes(response)
                conn.sendall(whole[: len(whole) - len(response.content) + max(len(response.content) // 2, 1)])
            else:  # a stall (read_timeout): nothing until the client gives up
                conn.settimeout(0.1)
                while not self.ended.is_set():
                    try:
                        if not conn.recv(65536):
                            return
                    except TimeoutError:
                        continue
                    except OSError:
                        return

    @staticmethod
    def _bytes(response: httpx.Response) -> bytes:
        reason = httpx.codes.get_reason_phrase(response.status_code) or "Unknown"
        lines = [f"HTTP/1.1 {response.status_code} {reason}"]
        lines += [f"{k}: {v}" for k, v in response.headers.multi_items() if k.lower() != "connection"]
        if "content-length" not in response.headers:
            lines.append(f"Content-Length: {len(response.content)}")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.content


def jsonable(value: Any) -> Any:
    """The value as JSON reads it back: tuples become lists; anything else not JSON becomes its repr."""
    return json.loads(json.dumps(value, default=repr))


def drain_events() -> None:
    async def drain() -> None:
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


def read_tasks(client: Any, root_flow_run_id: Any) -> tuple[list[Any], bool, list[Any]]:
    """Task runs of the flow run and of its subflows, from the API: (name, state name, state type, run_count,
    id, message); settled?; the flow run and its subflows' ids. The API keeps no creation order (ids are random
    past the millisecond, the expected start time is set in the run's own thread), so none is read."""
    flow_runs = {root_flow_run_id}
    subflow_parents: set[Any] = set()
    task_runs: dict[Any, Any] = {}
    frontier = {root_flow_run_id}
    while frontier:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(frontier))))
        task_runs.update({tr.id: tr for tr in runs})
        children = (
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[tr.id for tr in runs])
                )
            )
            if runs
            else []
        )
        subflow_parents |= {fr.parent_task_run_id for fr in children}
        frontier = {fr.id for fr in children} - flow_runs
        flow_runs |= frontier
    # A subflow's parent task run stands for the subflow call in its parent flow: not a task of the flow.
    tasks = [tr for tid, tr in task_runs.items() if tid not in subflow_parents]
    rows = [
        [
            tr.name.rsplit("-", 1)[0],
            tr.state_name,
            tr.state_type.value,
            tr.run_count,
            tr.id,
            tr.state and tr.state.message,
        ]
        for tr in tasks
    ]
    settled = all(tr.state is not None and tr.state.is_final() for tr in tasks)
    return rows, settled, sorted(flow_runs, key=str)


def settled_tasks(root_flow_run_id: Any) -> tuple[list[Any], list[Any]]:
    """Poll the API until every task run is final and the set is stable (bounded); the task rows and flow runs."""
    deadline = time.monotonic() + SETTLE_S
    previous, unchanged_since = None, time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            rows, settled, flow_runs = read_tasks(client, root_flow_run_id)
            now = time.monotonic()
            if rows != previous:
                previous, unchanged_since = rows, now
            elif settled or now - unchanged_since >= 2.0 or now >= deadline:
                return rows, flow_runs
            time.sleep(0.1)


def delays(value: Any, retries: int) -> Any:
    """A strategy's ``retry_delay_seconds`` as Prefect takes it: ``{exponential: ...}`` expanded to a list."""
    if isinstance(value, dict):
        spec = value["exponential"]
        out = [spec["base"] * spec.get("factor", 2.0) ** n for n in range(retries)]
        return [min(d, spec["cap"]) for d in out] if "cap" in spec else out
    return value


@contextlib.contextmanager
def with_strategy(module: Any, flow: Any, strategy: dict[str, Any] | None, router: Router) -> Any:
    """The case's strategy by hand: each matching task of the flow's module replaced by ``task.with_options``
    with the strategy's options (the flow finds it by its global name), the flow by ``flow.with_options``."""
    if not strategy:
        yield flow
        return
    names = {"retries", "retry_delay_seconds", "retry_jitter_factor", "timeout_seconds", "persist_result"}
    options = {k: v for k, v in strategy.items() if k in names}
    if "cache_policy" in strategy:  # Prefect's policies by name, "+" their compound
        from prefect import cache_policies

        names = [{"none": "NO_CACHE"}.get(p, p.upper()) for p in strategy["cache_policy"].split("+")]
        parts = [getattr(cache_policies, name) for name in names]
        policy = parts[0]
        for part in parts[1:]:
            policy = policy + part
        options["cache_policy"] = policy
    if "cache_expiration" in strategy:
        from datetime import timedelta

        options["cache_expiration"] = timedelta(seconds=strategy["cache_expiration"])
    if "retry_delay_seconds" in options:
        options["retry_delay_seconds"] = delays(options["retry_delay_seconds"], options.get("retries", 0))
    if strategy.get("retry_condition") == "transient" or strategy.get("honour_retry_after"):
        options["retry_condition_fn"] = condition(strategy, router)
    saved = {
        name: task
        for name, task in vars(module).items()
        if isinstance(task, Task) and fnmatch.fnmatchcase(task.name, strategy.get("tasks", "*"))
    }
    try:
        for name, task in saved.items():
            tags = {"tags": set(task.tags) | set(strategy["tags"])} if "tags" in strategy else {}
            setattr(module, name, task.with_options(**options, **tags))
        if "flow_retries" in strategy:
            flow = flow.with_options(
                retries=strategy["flow_retries"], retry_delay_seconds=strategy.get("flow_retry_delay_seconds", 0)
            )
        yield flow
    finally:
        for name, task in saved.items():
            setattr(module, name, task)


def condition(strategy: dict[str, Any], router: Router) -> Any:
    """A strategy's retry condition as the language defines it, judging by what the endpoint last served the
    task run: ``transient`` retries transport faults, 5xx, 408, 429 and a 403 that is a rate limit, never a
    malformed body or another 4xx; ``honour_retry_after`` first waits what that answer's Retry-After asks."""

    def retry_if(task: Any, task_run: Any, state: Any) -> bool:
        step = router.last.get(task_run.id)
        allowed = True
        if strategy.get("retry_condition") == "transient" and step is not None:
            headers = {k.lower(): str(v) for k, v in step.get("headers", {}).items()}
            status = step.get("status", 200)
            limited = status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
            allowed = "fault" in step or (
                "malformed" not in step and (status >= 500 or status in (408, 429) or limited)
            )
        if allowed and strategy.get("honour_retry_after") and step is not None:
            wait = {k.lower(): v for k, v in step.get("headers", {}).items()}.get("retry-after")
            if wait is not None:
                time.sleep(float(wait))
        return allowed

    return retry_if


@contextlib.contextmanager
def in_folder(path: str) -> Any:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def stored_rows(module: Any, parameters: dict[str, Any], folder: str) -> Any:
    """The rows the flow stored, read as its module says (``harness_stored_rows``): one value, or rows."""
    hook = getattr(module, "harness_stored_rows", None)
    if hook is None:
        return None
    path, query = hook(parameters)
    db = os.path.join(folder, path)
    if not os.path.exists(db):
        return None
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = [list(r) for r in conn.execute(query).fetchall()]
    return rows[0][0] if len(rows) == 1 and len(rows[0]) == 1 else rows


def run_case(spec: dict[str, Any], api_url: str) -> dict[str, Any]:
    module_name, name = spec["flow"].split(":")
    module = importlib.import_module(module_name)
    router = Router(spec["endpoints"], api_url.rsplit("/api", 1)[0], spec.get("seed", 0))
    storage = tempfile.mkdtemp(prefix="fidelity-results-")
    out: dict[str, Any] = {
        "flow": None,
        "flow_type": None,
        "flow_message": None,
        "tasks": [],
        "flow_calls": [],
        "flow_states": [],
        "calls": {},
        "unmatched": [],
        "result": None,
        "error": None,
        "wall_s": None,
        "sqlite": None,
        "hooks": [],
    }
    hook_log.RAN.clear()
    try:
        with (
            in_folder(storage),  # the flow's working directory: where it stores rows, if it does
            temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: storage}),
            router.mock,
            with_strategy(module, getattr(module, name), spec.get("strategy"), router) as flow,
            WireServer(router).serving() if spec.get("transport") == "wire" else contextlib.nullcontext(),
        ):
            router.started[0] = began = time.monotonic()
            if inspect.iscoroutinefunction(flow.fn):
                state = asyncio.run(flow(**spec["parameters"], return_state=True))
            else:
                state = flow(**spec["parameters"], return_state=True)
            out["wall_s"] = time.monotonic() - began
            out["slept_s"] = router.slept
            result = state.result(raise_on_failure=False) if state.is_completed() else None
        out["flow"] = state.name
        out["flow_type"] = state.type.value
        out["flow_message"] = state.message
        out["result"] = jsonable(result)
        out["sqlite"] = stored_rows(module, spec["parameters"], storage)
        out["calls"] = router.counts()
        out["hooks"] = counted(hook_log.RAN, state.state_details.flow_run_id)
        out["unmatched"] = router.unmatched
        drain_events()
        rows, flow_runs = settled_tasks(state.state_details.flow_run_id)
        # Each task run with its retries (its Retrying states in the API's history), the calls it made, in order,
        # and what served each, its states in order and its final message; then the calls made outside any task
        # run (a flow's own body), and the states of the flow run and its subflow runs.
        with get_client(sync_client=True) as client:
            histories = {
                row[4]: [s.name for s in sorted(client.read_task_run_states(row[4]), key=lambda s: s.timestamp)]
                for row in rows
            }
            # Every state a flow run was moved to; not the one it was created in (the harness's timeline lists the
            # states the engine proposes, from Running on).
            out["flow_states"] = sorted(
                s.name
                for run in flow_runs
                for s in sorted(client.read_flow_run_states(run), key=lambda s: s.timestamp)[1:]
            )
        out["tasks"] = sorted(
            [
                *row[:4],
                histories[row[4]].count("Retrying"),
                [[e, served] for who, e, served in router.log if who == row[4]],
                histories[row[4]],
                row[5],
            ]
            for row in rows
        )
        out["flow_calls"] = [[e, served] for who, e, served in router.log if who is None]
    except BaseException:  # a broken case is reported; the others still run
        out["error"] = traceback.format_exc()
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.fidelity.reference OUT.json", file=sys.stderr)
        return 2
    started = time.perf_counter()
    results: dict[str, Any] = {}
    # Prefect's default of 30 s to start its test server ran out once on a 2-core machine with two CPU-bound
    # processes and a CI run beside it.
    with prefect_test_harness(server_startup_timeout=STARTUP_TIMEOUT_S):
        ready = time.perf_counter() - started
        api_url = PREFECT_API_URL.value()
        with temporary_settings(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_LOGGING_TO_API_ENABLED: False}
        ):
            for spec in [*CASES, *STEP_CASES]:
                t0 = time.perf_counter()
                results[spec["name"]] = run_case(spec, api_url)
                print(f"reference: {time.perf_counter() - t0:6.2f} s  {spec['name']}", file=sys.stderr)
    with open(argv[1], "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    total = time.perf_counter() - started
    print(f"reference: {len(results)} case(s), server ready in {ready:.1f} s, {total:.1f} s in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
