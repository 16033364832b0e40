"""Where a fault is served: each endpoint's schedule of steps, and the respx router serving it to httpx.

Prefect's own API traffic passes through; every other request is matched
against the scenario's endpoints (first declared wins) and logged, whatever
the step does with it. A request that matches nothing is logged as unmatched
and answered with an error, and the scenario fails naming it. The wire server
(``harness.run.wire``) serves the same schedules over real sockets through
``Injector.take`` and ``Injector.claim_connect``, so steps mean the same on
both transports.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import httpx
import respx

from harness.run.clock import Clock, Line
from harness.run.hooks import timeout_error, virtual_client_waits
from harness.run.internals import replace, wrap
from harness.run.schedules import Call
from harness.run.schedules import Schedule as _Schedule
from harness.run.states import Recorder, TaskRecord
from harness.scenario.api_routes import route_of
from harness.scenario.model import (
    BODY_FAULTS,
    CONNECT_FAULTS,
    ApiRoute,
    Endpoint,
    EventStep,
    Scenario,
    Step,
)

if TYPE_CHECKING:
    from harness.run.wire.backend import Wire

FAULT_ERRORS: dict[str, tuple[type[httpx.TransportError], str]] = {
    "connect_timeout": (httpx.ConnectTimeout, "timed out"),
    "read_timeout": (httpx.ReadTimeout, "The read operation timed out"),
    "write_timeout": (httpx.WriteTimeout, "The write operation timed out"),
    "pool_timeout": (httpx.PoolTimeout, "timed out"),
    "connect_error": (httpx.ConnectError, "[Errno 111] Connection refused"),
    "connection_reset": (httpx.ReadError, "[Errno 104] Connection reset by peer"),
    "remote_protocol_error": (httpx.RemoteProtocolError, "Server disconnected without sending a response."),
}
HTML_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
DEFAULT_JSON = {"items": [{"id": 1}, {"id": 2}], "total": 2}


_ASYNC: contextvars.ContextVar[bool] = contextvars.ContextVar("harness_async_request", default=False)
_FORWARDING: contextvars.ContextVar[bool] = contextvars.ContextVar("harness_forwarding", default=False)


class UnmatchedRequest(httpx.TransportError):
    """Raised into the flow for a request no endpoint declares."""


class _CutShort(Exception):
    """Latency outlasted a timeout: ``error`` is raised into the flow, ``served`` logged."""

    def __init__(self, error: BaseException, served: str) -> None:
        self.error, self.served = error, served


@dataclass(frozen=True, slots=True)
class Taken:
    """A call matched to its endpoint: the step it gets and the latency drawn for it."""

    at: float
    endpoint: Endpoint
    step: Step
    latency: float


class _Router(respx.MockRouter):
    """respx's router, marking an AsyncClient's requests: ``_dispatch`` answers them with a coroutine."""

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        token = _ASYNC.set(True)
        try:
            return await super().async_handler(request)
        finally:
            _ASYNC.reset(token)


@contextlib.contextmanager
def harness_requests() -> Iterator[None]:
    """Requests the harness itself makes to Prefect's API meanwhile: let through, never logged as the flow's."""
    token = _FORWARDING.set(True)
    try:
        yield
    finally:
        _FORWARDING.reset(token)


def watches_api(scenario: Scenario) -> bool:
    """Whether a run of ``scenario`` answers Prefect's API itself: faults on it, or expectations about it."""
    expect = scenario.expect
    return bool(
        scenario.prefect_api
        or scenario.events
        or expect.prefect_api is not None
        or expect.server is not None
        or any(i.kind == "no_orphan_flow_runs" for i in expect.invariants)
    )


def api_counts(calls: Iterable[Call]) -> dict[str, int]:
    """Requests to Prefect's API per route, in the order routes were first called."""
    return dict(Counter(call.endpoint or call.url for call in calls))


def counts_of(scenario: Scenario, calls: Sequence[Call]) -> dict[str, int]:
    """Calls per declared endpoint (its request line) and function target, each listed."""
    out = {e.request.text: 0 for e in scenario.endpoints} | {f.key: 0 for f in scenario.functions}
    for call in calls:
        if call.endpoint is not None:
            out[call.endpoint] += 1
    return out


class Injector:
    """Serves a scenario's endpoints for the duration of a run: through respx to httpx, and to the wire server.

    ``mock_httpx=False`` (``transport: wire``) leaves httpx on real sockets, which
    the network guard sends to the wire server like every other client's.
    ``passthrough`` names other Prefect APIs whose traffic is not the flow's
    (the user's own test server): it goes through, and is never a call.
    """

    def __init__(
        self,
        scenario: Scenario,
        clock: Clock,
        recorder: Recorder,
        api_url: str,
        *,
        mock_httpx: bool = True,
        passthrough: Sequence[str] = (),
        flow: Any = None,
    ) -> None:
        from harness.run.functions.faults import Functions

        self.scenario, self.clock, self.recorder, self.mock_httpx = scenario, clock, recorder, mock_httpx
        # ``functions:``: in-process calls, served from the same log (``flow``: whose module a target is patched in)
        self.functions = Functions(scenario, clock, recorder, self._logged, flow) if scenario.functions else None
        self._installed = contextlib.ExitStack()
        self.calls: list[Call] = []
        self.answered: list[Callable[[Call], None]] = []  # called with each call once logged (a crash's point)
        self._schedules = [
            _Schedule(e, random.Random(f"{scenario.seed}:{i}"), clock) for i, e in enumerate(scenario.endpoints)
        ]
        self._bytes_rng = random.Random(f"{scenario.seed}:bytes")
        self._lock = threading.Lock()
        self.router = _Router(assert_all_called=False, assert_all_mocked=True)
        self.api = PrefectApi(scenario, clock, recorder, api_url, self.answer) if watches_api(scenario) else None
        if self.api is not None:
            self.router.route(url__startswith=self.api.prefix).mock(side_effect=self.api.dispatch)
        self.router.route(url__startswith=api_url.rsplit("/api", 1)[0] + "/").pass_through()
        for url in passthrough:  # another server's API, unless an endpoint is declared under it
            prefix = url.rstrip("/") + "/"
            if not any(e.request.url.startswith(prefix) for e in scenario.endpoints):
                self.router.route(url__startswith=prefix).pass_through()
        self.router.route().mock(side_effect=self._dispatch)

    def on_wire(self, wire: Wire) -> AbstractContextManager[Any]:
        """The wire server serving this scenario's schedules to every client that is not httpx under respx."""
        return wire.serving(self)

    def __enter__(self) -> Injector:
        if self.functions is not None:
            self._installed.enter_context(self.functions.installed())
        try:
            if self.mock_httpx:
                self.router.__enter__()
            elif self.api is not None:
                self.api.router.__enter__()  # httpx on real sockets, but Prefect's API still answered here
        except BaseException:
            self._installed.close()
            raise
        if self.api is not None:
            try:
                self.api.open()
            except BaseException:
                self.__exit__(None, None, None)
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.api is not None:  # the events still queued are sent, and their requests answered, first
                self.api.settle(sum(len(r.history) for r in self.recorder.tasks.values()))
        finally:
            try:
                if self.mock_httpx:
                    self.router.__exit__(*exc)
                elif self.api is not None:
                    self.api.router.__exit__(*exc)
                if self.api is not None:
                    self.api.close()
            finally:
                self._installed.close()  # the function targets' patches, whatever failed above

    def positions(self) -> list[Any]:
        """Where each endpoint's schedule is, for the next run of a history (``harness.run.crash``)."""
        api = [s.position() for s in self.api.all_schedules()] if self.api is not None else []
        functions = [s.position() for s in self.functions.schedules] if self.functions is not None else []
        return [s.position() for s in self._schedules] + [api, functions, self._bytes_rng.getstate()]

    def go_on(self, positions: list[Any]) -> None:
        """Serve on from ``positions``: the endpoints' schedules go on where the history's last run left them."""
        *schedules, api, functions, self_bytes = positions
        for schedule, position in zip(self._schedules, schedules, strict=True):
            schedule.go_on(position)
        for function, position in zip(self.functions.schedules if self.functions else [], functions, strict=True):
            function.go_on(position)
        for route, position in zip(self.api.all_schedules() if self.api is not None else [], api, strict=True):
            route.go_on(position)
        self._bytes_rng.setstate(self_bytes)

    @property
    def hosts(self) -> list[str]:
        """The declared hosts, in the order endpoints declare them."""
        return list(dict.fromkeys(s.host for s in self._schedules))

    @property
    def unmatched(self) -> list[Call]:
        return [c for c in self.calls if c.endpoint is None]

    def counts(self) -> dict[str, int]:
        return counts_of(self.scenario, self.calls)

    def take(
        self, method: str, url: str, record: TaskRecord | None, transport: str = "respx", line: Line | None = None
    ) -> Taken | None:
        """The step for a call, from the first endpoint that matches; None (logged) when none does."""
        with self._lock:  # concurrent tasks are sequenced: one schedule position per call
            for schedule in self._schedules:
                if schedule.endpoint.request.matches(method, url):
                    step = schedule.next(line)
                    latency = step.latency.draw(schedule.rng) if step.latency else 0.0
                    return Taken(self.clock.now(line), schedule.endpoint, step, latency)
            self.calls.append(
                Call(self.clock.now(line), method, url, None, "unmatched", None, (), *_who(record), transport=transport)
            )
            return None

    def claim_connect(self, host: str, record: TaskRecord | None) -> Step | None:
        """A connect-phase fault (refused, timed out) that the next connection to ``host`` meets, logged as a call.

        It happens before any request names its endpoint, so it is decided per
        host: the first endpoint of ``host`` whose next step is one claims it
        (validation allows one such endpoint per host).
        """
        with self._lock:
            for schedule in self._schedules:
                if schedule.host == host and schedule.peek().fault in CONNECT_FAULTS:
                    step = schedule.next()
                    latency = step.latency.draw(schedule.rng) if step.latency else 0.0
                    break
            else:
                return None
        self.clock.sleep(latency)
        line = schedule.endpoint.request
        self.log(self.clock.now(), line.method, line.url, schedule.endpoint, step.describe(), None, (), record, "wire")
        return step

    def _dispatch(self, request: httpx.Request) -> Any:
        serving = self._serving(request)
        if _ASYNC.get():
            return _adrive(serving, self._aspend)  # respx awaits it: latency waits without blocking the event loop
        return _drive(serving, self._spend)

    def _serving(self, request: httpx.Request) -> Generator[tuple[float, Any], None, httpx.Response]:
        """A call's answer (or fault), logged; yields the wait for its latency to the driver that spends it."""
        method, url = request.method, str(request.url)
        record = self.recorder.current()
        taken = self.take(method, url, record)
        if taken is None:
            raise UnmatchedRequest(f"harness: no endpoint declared for {method} {url}", request=request)
        at, endpoint, step = taken.at, taken.endpoint, taken.step
        try:
            if taken.latency:
                seconds, cut, cut_by_task = self._decide(taken.latency, request, record)
                try:
                    yield seconds, record
                except (TimeoutError, _prefect_cancelled()) as exc:
                    # In real time Prefect's own timer (its alarm raises its CancelledError, a TimeoutError
                    # once out of the scope) may fire during the sleep before the harness's: the same
                    # timeout, logged the same way, Prefect's own exception carried on.
                    raise _CutShort(exc, cut_by_task) from None
                if cut is not None:
                    raise cut
            response = self._fault_or_answer(step, request)
        except _CutShort as cut:
            self.log(at, method, url, endpoint, cut.served, None, (), record)
            raise cut.error from None
        except BaseException:
            self.log(at, method, url, endpoint, step.describe(), None, (), record)
            raise
        headers = tuple((k, v) for k, v in response.headers.items())
        self.log(at, method, url, endpoint, step.describe(), response.status_code, headers, record)
        return response

    def log(
        self,
        at: float,
        method: str,
        url: str,
        endpoint: Endpoint,
        served: str,
        status: int | None,
        headers: tuple[tuple[str, str], ...],
        record: TaskRecord | None,
        transport: str = "respx",
    ) -> None:
        """Log a call to ``endpoint`` and what was served."""
        self._logged(
            Call(at, method, url, endpoint.request.text, served, status, headers, *_who(record), transport=transport)
        )

    def _logged(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
        for answered in self.answered:
            answered(call)

    def _fault_or_answer(self, step: Step, request: httpx.Request) -> httpx.Response:
        if step.fault:
            cls, message = FAULT_ERRORS[step.fault]
            raise cls(message, request=request)
        return self.answer(step)

    def answer(self, step: Step) -> httpx.Response:
        """The response a step answers with: its status, headers and body, or its malformed body.

        A wire-only body fault (``partial_body``, ``bad_chunk``, ``slow_body``)
        spoils this answer on the wire; without a body of its own it carries the default JSON.
        """
        if step.malformed:
            return self._malformed(step)
        headers = dict(step.headers)
        status = step.status or 200
        if step.has("json"):
            return httpx.Response(status, json=step.json_, headers=headers)
        if step.text is not None:
            return httpx.Response(status, text=step.text, headers=headers)
        if step.body_base64 is not None:
            return httpx.Response(status, content=base64.b64decode(step.body_base64), headers=headers)
        if step.fault in BODY_FAULTS:
            return httpx.Response(status, json=DEFAULT_JSON, headers=headers)
        return httpx.Response(status, headers=headers)

    def _spend(self, seconds: float, record: TaskRecord | None) -> None:
        """Wait ``seconds`` on the clock, counted against the attempt of task run ``record``."""
        if record is not None:
            record.attempt_waited += seconds
        self.clock.sleep(seconds)

    async def _aspend(self, seconds: float, record: TaskRecord | None) -> None:
        if record is not None:
            record.attempt_waited += seconds
        await self.clock.asleep(seconds)

    def _decide(
        self, latency: float, request: httpx.Request, record: TaskRecord | None
    ) -> tuple[float, _CutShort | None, str]:
        """How long a call with ``latency`` waits, and what cuts it short (the task's timeout or the client's
        read timeout, whichever comes first), if anything; and how a cut by the task's timeout is logged."""
        budget = None
        task_timeout: float | None = getattr(getattr(record, "task", None), "timeout_seconds", None)
        if task_timeout is not None and record is not None:
            # This attempt's own time waited so far, its compute and other task runs' waits aside:
            # a timeout waits the same on any machine, and concurrent task runs do not eat each other's budget.
            budget = max(task_timeout - record.attempt_waited, 0.0)
        read = (request.extensions.get("timeout") or {}).get("read")
        cut_by_task = f"task timeout_seconds={task_timeout} (latency {latency:g} s)"
        if task_timeout is not None and budget is not None and latency >= budget and (read is None or budget <= read):
            return budget, _CutShort(timeout_error(task_timeout), cut_by_task), cut_by_task
        if read is not None and latency > read:
            error = httpx.ReadTimeout("The read operation timed out", request=request)
            return read, _CutShort(error, f"read_timeout (latency {latency:g} s > client timeout {read:g} s)"), ""
        return latency, None, cut_by_task

    def _malformed(self, step: Step) -> httpx.Response:
        status = step.status or 200
        headers = {"content-type": "application/json", **step.headers}
        kind = step.malformed
        if kind == "truncated_json":
            whole = json.dumps(step.json_ if step.has("json") else DEFAULT_JSON).encode()
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
            body = json.dumps(step.json_ if step.has("json") else DEFAULT_JSON).encode()
        else:  # random_bytes
            body = bytes(self._bytes_rng.getrandbits(8) for _ in range(64))
            headers["content-type"] = "application/octet-stream"
        return httpx.Response(status, content=body, headers={**headers, **step.headers})


class PrefectApi:
    """The flow's traffic to Prefect's API, answered here: each request logged with its route, served its route's
    next step (``prefect_api:``), or let through to the real server by a client of the harness's own.

    ``lost_answer`` sends the request on (the server applies it), then spends the client's read timeout and
    raises the ``ReadTimeout`` the client would meet. The flow runs the server created are kept
    (``created``): what ``no_orphan_flow_runs`` and the server's view read back.
    """

    def __init__(
        self,
        scenario: Scenario,
        clock: Clock,
        recorder: Recorder,
        api_url: str,
        answer: Callable[[Step], httpx.Response],
    ) -> None:
        self.clock, self.recorder, self.answer, self.seed = clock, recorder, answer, scenario.seed
        self.prefix = api_url.rstrip("/") + "/"
        self._path = urlsplit(api_url).path.rstrip("/")  # "/api"
        self.schedules = [
            _Schedule(e, random.Random(f"{scenario.seed}:api:{i}"), clock) for i, e in enumerate(scenario.prefect_api)
        ]
        self.events = (
            _Schedule(EventsTarget(scenario.events), random.Random(f"{scenario.seed}:events"), clock)
            if scenario.events
            else None
        )
        self.sent: set[str] = set()  # ids of the task-run events the flow's process sent (dropped ones too)
        self.delivered: dict[Any, str] = {}  # per task run id, the state of the last event of it the server got
        self._port = urlsplit(api_url).port
        self.calls: list[Call] = []
        self.created: list[tuple[str, bool]] = []  # the flow runs the server created, in order: (id, answer heard)
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self.router = _Router(assert_all_called=False, assert_all_mocked=False)  # with httpx on the wire
        self.router.route(url__startswith=self.prefix).mock(side_effect=self.dispatch)
        self.router.route().pass_through()

    def all_schedules(self) -> list[_Schedule[Any]]:
        """The routes' schedules, then the events stream's: what a history's next run goes on from."""
        return [*self.schedules, *([self.events] if self.events is not None else [])]

    def dispatch(self, request: httpx.Request) -> Any:
        if _FORWARDING.get() or not request.headers.get("user-agent", "").startswith("prefect/"):
            # The harness's own request, or not Prefect's API client's (the events client's version check as it
            # connects, once a session): the next route lets it through.
            return None
        path = request.url.path[len(self._path) :] if request.url.path.startswith(self._path) else request.url.path
        route = route_of(request.method, path)
        with self._lock:
            schedule = next((s for s in self.schedules if s.endpoint.request.text == route), None)
            step = schedule.next() if schedule is not None else None
            latency = step.latency.draw(schedule.rng) if schedule is not None and step and step.latency else 0.0
        serving = self._serving(request, route, step, latency)
        if _ASYNC.get():
            return _adrive(serving, self._ado)
        return _drive(serving, self._do)

    def _serving(
        self, request: httpx.Request, route: str, step: Step | None, latency: float
    ) -> Generator[tuple[str, Any], Any, httpx.Response]:
        """A request's answer or fault, logged; yields ("sleep", seconds) and ("forward", request) to its driver."""
        at, record = self.clock.now(), self.recorder.current()
        connecting = step is not None and step.fault in CONNECT_FAULTS  # the delay is the connection's
        read = _timeout(request, "connect" if connecting else "read")
        late = read is not None and latency > read  # the answer would come after the client stopped waiting
        served, response = step.describe() if step is not None else "pass", None
        try:
            if latency:
                yield "sleep", read if late else latency
            if late and connecting:
                served = f"connect_timeout (latency {latency:g} s > client connect timeout {read:g} s)"
                raise httpx.ConnectTimeout(_API_READ_TIMEOUT, request=request)
            if step is not None and step.fault == "lost_answer":
                self._note_created(route, (yield "forward", request), heard=False)
                yield "sleep", max((read or 0.0) - (read or 0.0 if late else latency), 0.0)
                raise httpx.ReadTimeout(_API_READ_TIMEOUT, request=request)
            if step is None or step.pass_:
                answer = yield "forward", request
                self._note_created(route, answer, heard=not late)
                if late:
                    served = f"pass, answer lost (latency {latency:g} s > client timeout {read:g} s)"
                    raise httpx.ReadTimeout(_API_READ_TIMEOUT, request=request)
                response = answer
                return answer  # type: ignore[no-any-return]
            if late:
                served = f"read_timeout (latency {latency:g} s > client timeout {read:g} s)"
                raise httpx.ReadTimeout(_API_READ_TIMEOUT, request=request)
            if step.fault:
                cls, message = FAULT_ERRORS[step.fault]
                raise cls(_API_READ_TIMEOUT if step.fault == "read_timeout" else message, request=request)
            response = self.answer(step)
            return response
        finally:
            status = response.status_code if response is not None else None
            headers = tuple(response.headers.items()) if response is not None and step is not None else ()
            call = Call(at, request.method, str(request.url), route, served, status, headers, *_who(record))
            with self._lock:
                self.calls.append(call)

    def _do(self, kind: str, arg: Any) -> Any:
        """What a serving yields, done in this thread: ("sleep", seconds) on the clock, ("forward", request)."""
        return self.clock.sleep(arg) if kind == "sleep" else self._forward(arg)

    async def _ado(self, kind: str, arg: Any) -> Any:
        """The same in a coroutine: the forward in a worker thread."""
        if kind == "sleep":
            return await self.clock.asleep(arg)
        await arg.aread()
        return await asyncio.to_thread(self._forward, arg)

    def _forward(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to the real server with the harness's own client; its answer, as a fresh response."""
        with harness_requests():
            if self._client is None:
                self._client = httpx.Client(trust_env=False, timeout=30.0)
            sent = self._client.send(
                httpx.Request(request.method, request.url, headers=request.headers, content=request.read())
            )
        kept = {k: v for k, v in sent.headers.items() if k.lower() not in _HOP_HEADERS}
        return httpx.Response(sent.status_code, headers=kept, content=sent.content)

    def _note_created(self, route: str, answer: httpx.Response, heard: bool) -> None:
        """A flow run the server created (``heard``: and the client got the answer)."""
        if route == "POST /flow_runs/" and answer.status_code in (200, 201):
            with contextlib.suppress(ValueError, KeyError, TypeError), self._lock:
                self.created.append((str(answer.json()["id"]), heard))

    def open(self) -> None:
        """Start serving: the client's retries wait on the virtual clock; Prefect checks its server's version, and
        reads the flow its events name, once per process: each run does anew, as the flow's own process would;
        the events stream's frames pass ``_sending``."""
        virtual_client_waits(self._stack, self.clock, self.seed)
        replace(self._stack, "prefect._internal.version_checking:_API_VERSION_CHECK_CACHE", set())
        replace(self._stack, "prefect.events.related:RESOURCE_CACHE", {})  # the flow read once per process too
        wrap(self._stack, "websockets.asyncio.client:ClientConnection.send", self._sending)

    def settle(self, emitted: int) -> None:
        """Wait (real time) until the events worker has sent the ``emitted`` task-run events of the run: the
        faults on the events stream apply to each, and the server's view waits for them. It stops waiting once
        no frame has gone for ``QUIET_S`` (the worker failed to send some) and after ``SETTLE_S`` in all."""
        deadline, seen, quiet = time.monotonic() + SETTLE_S, -1, 0.0
        while len(self.sent) < emitted and time.monotonic() < deadline:
            if len(self.sent) != seen:
                seen, quiet = len(self.sent), time.monotonic() + QUIET_S
            elif time.monotonic() > quiet:
                break
            time.sleep(0.01)

    def _sending(self, send: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        api = self

        async def sending(connection: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            event, run_id = api._event_of(connection, message)
            if event is None:
                return await send(connection, message, *args, **kwargs)
            step = api._event_step()
            served = "drop" if step.drop else "disconnect" if step.disconnect else "pass"
            api._log_event(run_id, event, served, step)
            if served == "drop":
                return None  # lost on the way: the client believes it sent
            if served == "disconnect":
                await connection.close()  # the send below meets the closed connection; Prefect reconnects
            return await send(connection, message, *args, **kwargs)

        return sending

    def _event_of(self, connection: Any, message: Any) -> tuple[dict[str, Any] | None, Any]:
        """The state event of one of this run's task runs a frame carries on the session's events stream, and the
        task run's id; None for any other frame, event or connection (an earlier run's, resent on a reconnect)."""
        request = getattr(connection, "request", None)
        address = getattr(connection, "remote_address", None) or ()
        if request is None or not str(request.path).endswith("/events/in") or address[1:2] != (self._port,):
            return None, None
        if not isinstance(message, str | bytes) or b"prefect.task-run." not in (
            message if isinstance(message, bytes) else message.encode()
        ):
            return None, None
        try:
            data = json.loads(message)
            resource = str(data["resource"]["prefect.resource.id"])
            run_id = uuid.UUID(resource.removeprefix("prefect.task-run."))
        except (ValueError, KeyError, TypeError):
            return None, None
        if not str(data.get("event")).startswith("prefect.task-run.") or run_id not in self.recorder.tasks:
            return None, None
        return data, run_id

    def _event_step(self) -> EventStep:
        with self._lock:
            if self.events is None:
                return _PASS_EVENT
            step = cast(EventStep, self.events.next())
            if isinstance(step.drop, float) and self.events.rng.random() >= step.drop:
                return _PASS_EVENT  # drawn: this one gets through
            return step

    def _log_event(self, run_id: Any, event: dict[str, Any], served: str, step: EventStep) -> None:
        name = str(event.get("event"))
        if step.drop and served == "pass":
            served = f"pass ({step.describe()} drawn)"
        call = Call(self.clock.now(), "WS", name, "WS /events/in", served, None, (), *_who(self.recorder.tasks[run_id]))
        with self._lock:
            self.calls.append(call)
            self.sent.add(str(event.get("id")))
            if served.startswith("pass"):
                self.delivered[run_id] = name.removeprefix("prefect.task-run.")

    def close(self) -> None:
        self._stack.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    def flow_run_id(self) -> str | None:
        """The flow run whose creation the flow heard of (the last one answered), if any."""
        heard = [i for i, delivered in self.created if delivered]
        return heard[-1] if heard else None


@dataclass(frozen=True)
class EventsTarget:
    """The events stream as a schedule's target: its steps, one per event sent."""

    responses: tuple[EventStep, ...]
    chaos: None = None
    request: ApiRoute = ApiRoute(method="WS", path="/events/in", text="WS /events/in")


_PASS_EVENT = EventStep.model_validate({"pass": True})
QUIET_S = 1.0  # the events worker sent nothing for this long (real time): it will send no more
SETTLE_S = 5.0  # at most this long (real time) the run's events take to be sent, and then to be recorded
# What a timeout says on plain http (Prefect's API on loopback); on https a read's is "The read operation timed out"
_API_READ_TIMEOUT = "timed out"
_HOP_HEADERS = ("content-encoding", "content-length", "transfer-encoding", "connection")


def _timeout(request: httpx.Request, phase: str) -> float | None:
    """The client's ``read`` or ``connect`` timeout for ``request`` (Prefect's: ``PREFECT_API_REQUEST_TIMEOUT``)."""
    seconds = (request.extensions.get("timeout") or {}).get(phase)
    return float(seconds) if seconds is not None else None


def _prefect_cancelled() -> type[BaseException]:
    """Prefect's own cancellation error (imported late: importing the harness does not import Prefect)."""
    from prefect._internal.concurrency.cancellation import CancelledError

    return CancelledError


def _who(record: TaskRecord | None) -> tuple[Any, str | None]:
    return (record.id, record.name) if record is not None else (None, None)


def _drive(serving: Generator[tuple[Any, ...], Any, httpx.Response], spend: Callable[..., Any]) -> httpx.Response:
    """Run a call's serving in this thread: ``spend`` does each thing it yields (a wait on the clock, a request
    sent on) and what it returns is sent back; what raises there is raised where the serving waits."""
    try:
        wait = next(serving)
        while True:
            try:
                done = spend(*wait)
            except BaseException as exc:  # a timeout raised into the wait: the serving sees it where it waits
                wait = serving.throw(exc)
                continue
            wait = serving.send(done)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _adrive(
    serving: Generator[tuple[Any, ...], Any, httpx.Response], spend: Callable[..., Awaitable[Any]]
) -> httpx.Response:
    """``_drive`` in a coroutine (an ``httpx.AsyncClient``'s call): each thing awaited."""
    try:
        wait = next(serving)
        while True:
            try:
                done = await spend(*wait)
            except BaseException as exc:
                wait = serving.throw(exc)
                continue
            wait = serving.send(done)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
