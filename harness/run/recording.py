"""The transport of a recording run: the flow's requests reach the live API, and each exchange is kept.

``harness record`` runs a flow once against the live API. This transport
takes the respx injector's place for that run; the wire backend routes every
connection the flow opens, whatever its client, to the loopback server, whose
forwarder (``harness.run.wire.forward``) sends each request to the real host
and hands the exchange here. Prefect's own API traffic goes straight to the
session's server and is never recorded.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from harness.run.clock import Clock
from harness.run.guard import NetworkGuard
from harness.run.schedules import Call
from harness.run.states import Recorder, TaskRecord
from harness.scenario.model import Scenario

if TYPE_CHECKING:
    from harness.run.wire.backend import Wire


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
    """Keeps each exchange of one recording run, and the calls as the run's call log shows them."""

    def __init__(
        self,
        scenario: Scenario,
        clock: Clock,
        recorder: Recorder,
        api_url: str,
        guard: NetworkGuard,
        *,
        connect_to: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        self.clock, self.recorder, self.guard = clock, recorder, guard  # the scenario and API URL: unused
        guard.connect_to(connect_to or {})
        self.calls: list[Call] = []
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def on_wire(self, wire: Wire) -> AbstractContextManager[Any]:
        """The wire server forwarding every request of the run to its real host, each exchange kept here."""
        return wire.forwarding(self)

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def counts(self) -> dict[str, int]:
        return dict(Counter(f"{c.method} {c.url}" for c in self.calls))

    def now(self) -> float:
        return self.clock.now()

    def letting_through(self) -> AbstractContextManager[None]:
        """The context a forwarded request is sent in: the network open, for that request only."""
        return self.guard.letting_through()

    def pinned(self, host: str) -> bool:
        return self.guard.pinned(host)

    def refused(self, what: str) -> None:
        self.guard.refused(what)

    def keep(self, exchange: Exchange, record: TaskRecord | None) -> None:
        """Keep one exchange, made for the task run ``record`` (None: the flow itself)."""
        e = replace(exchange, task=record.name if record is not None else None)
        served = str(e.status) if e.status is not None else "error"
        line = f"{e.method} {e.url}"
        call = Call(e.at, e.method, e.url, line, served, e.status, e.headers, getattr(record, "id", None), e.task)
        with self._lock:
            self.exchanges.append(e)
            self.calls.append(call)
