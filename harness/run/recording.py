"""The transport of a recording run: the flow's own httpx requests reach the network, each exchange is kept.

``harness record`` runs a flow once against the live API. This transport
takes the respx injector's place for that run: httpx's network transports
send through it (``hooks.httpx_sends``), and it sends each of the flow's
requests for real, inside the network guard's ``letting_through``, reads the
whole answer and keeps it as an ``Exchange``. Prefect's own API traffic passes
untouched and unrecorded; every connection outside httpx stays refused by the
guard.

Other clients (requests, urllib, aiohttp) need the wire backend's loopback
server acting as a forwarding proxy: a transport with this one's interface
(``calls``, ``exchanges``, ``counts``, a context manager) would record them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from harness.run.clock import Clock
from harness.run.guard import NetworkGuard
from harness.run.hooks import httpx_sends
from harness.run.states import Recorder
from harness.run.transport import Call
from harness.scenario.model import Scenario

KEPT_EXTENSIONS = ("http_version", "reason_phrase")  # the connection itself is closed once the body is read


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the flow sent while recording, and what the live API answered, or the error it met."""

    at: float  # seconds since the run started
    method: str
    url: str
    request_headers: tuple[tuple[str, str], ...]
    status: int | None  # None when no answer came
    headers: tuple[tuple[str, str], ...]  # the answer's headers, every one of them
    body: bytes  # decoded (no content-encoding)
    error: str | None = None  # "ConnectError: [Errno 111] Connection refused" when no answer came
    task: str | None = None


class Recording:
    """Sends the flow's httpx requests for real and keeps each exchange, for one run."""

    def __init__(self, scenario: Scenario, clock: Clock, recorder: Recorder, api_url: str, guard: NetworkGuard) -> None:
        self.scenario, self.clock, self.recorder, self.guard = scenario, clock, recorder, guard
        self.own = api_url.rsplit("/api", 1)[0] + "/"  # Prefect's own API: passed through, never recorded
        self.calls: list[Call] = []
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._patch = httpx_sends(self._send, self._asend)

    def __enter__(self) -> Recording:
        self._patch.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._patch.__exit__(*exc)

    def counts(self) -> dict[str, int]:
        return dict(Counter(f"{c.method} {c.url}" for c in self.calls))

    def _send(self, send: Callable[[httpx.Request], httpx.Response], request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(self.own):
            return send(request)
        at, record = self.clock.now(), self.recorder.current()
        with self.guard.letting_through(request.url.host):
            try:
                response = send(request)
                try:
                    raw = b"".join(response.iter_raw())
                finally:
                    response.close()
            except Exception as exc:
                self._failed(at, request, record, exc)
                raise
        return self._keep(at, request, response, raw, record)

    async def _asend(
        self, send: Callable[[httpx.Request], Awaitable[httpx.Response]], request: httpx.Request
    ) -> httpx.Response:
        if str(request.url).startswith(self.own):
            return await send(request)
        at, record = self.clock.now(), self.recorder.current()
        with self.guard.letting_through(request.url.host):
            try:
                response = await send(request)
                try:
                    raw = b"".join([chunk async for chunk in response.aiter_raw()])
                finally:
                    await response.aclose()
            except Exception as exc:
                self._failed(at, request, record, exc)
                raise
        return self._keep(at, request, response, raw, record)

    def _keep(
        self, at: float, request: httpx.Request, response: httpx.Response, raw: bytes, record: Any
    ) -> httpx.Response:
        """Keep the exchange and return the answer the flow gets: the same status, headers and bytes."""
        extensions = {k: v for k, v in response.extensions.items() if k in KEPT_EXTENSIONS}
        answer = httpx.Response(
            response.status_code, headers=response.headers, content=raw, extensions=extensions, request=request
        )
        headers = tuple(response.headers.multi_items())
        self._log(
            Exchange(
                at, request.method, str(request.url), _sent(request), response.status_code, headers, answer.content
            ),
            record,
        )
        return answer

    def _failed(self, at: float, request: httpx.Request, record: Any, error: Exception) -> None:
        error_text = f"{type(error).__name__}: {error}"
        self._log(Exchange(at, request.method, str(request.url), _sent(request), None, (), b"", error_text), record)

    def _log(self, exchange: Exchange, record: Any) -> None:
        e = replace(exchange, task=record.name if record is not None else None)
        served = str(e.status) if e.status is not None else "error"
        line = f"{e.method} {e.url}"
        call = Call(e.at, e.method, e.url, line, served, e.status, e.headers, getattr(record, "id", None), e.task)
        with self._lock:
            self.exchanges.append(e)
            self.calls.append(call)


def _sent(request: httpx.Request) -> tuple[tuple[str, str], ...]:
    return tuple(request.headers.multi_items())
