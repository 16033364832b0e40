"""Measured, not assumed: what each fault served on the wire raises in each HTTP client, and in httpx through respx."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import prefect.context  # noqa: F401 (the recorder reads it at each connection: imported here, not in a timed connect)
import pytest

from harness import Session
from harness.run.clock import Clock
from harness.run.guard import NetworkGuard
from harness.run.injector import Injector
from harness.run.states import Recorder
from harness.scenario.model import FAULTS, Scenario
from tests.wire_clients import CLIENTS, exception_name, raised

URL = "https://faults.test/x"
README = Path(__file__).parent.parent / "README.md"

# fault -> what each client raises over HTTPS (httpx, httpx async, requests, urllib3, urllib, aiohttp);
# "(2 calls)": the client sent the request again by itself before raising
MEASURED: dict[str, tuple[str, ...]] = {
    "connect_error": (
        "httpx.ConnectError",
        "httpx.ConnectError",
        "requests.ConnectionError",
        "urllib3.NewConnectionError",
        "urllib.URLError",
        "aiohttp.ClientConnectorError",
    ),
    "connect_timeout": (
        "httpx.ConnectTimeout",
        "httpx.ConnectTimeout",
        "requests.ConnectTimeout",
        "urllib3.ConnectTimeoutError",
        "urllib.URLError",
        "aiohttp.ConnectionTimeoutError",
    ),
    "read_timeout": (
        "httpx.ReadTimeout",
        "httpx.ReadTimeout",
        "requests.ReadTimeout",
        "urllib3.ReadTimeoutError",
        "TimeoutError",
        "aiohttp.SocketTimeoutError",
    ),
    "write_timeout": (  # a GET sends no body to block on: the stall ends in the client's read timeout
        "httpx.ReadTimeout",
        "httpx.ReadTimeout",
        "requests.ReadTimeout",
        "urllib3.ReadTimeoutError",
        "TimeoutError",
        "aiohttp.SocketTimeoutError",
    ),
    "connection_reset": (
        "httpx.RemoteProtocolError",
        "httpx.ReadError",
        "requests.ConnectionError",
        "urllib3.ProtocolError",
        "http.RemoteDisconnected",
        "aiohttp.ClientOSError (2 calls)",
    ),
    "remote_protocol_error": (
        "httpx.RemoteProtocolError",
        "httpx.RemoteProtocolError",
        "requests.ConnectionError",
        "urllib3.ProtocolError",
        "http.BadStatusLine",
        "aiohttp.ClientResponseError",
    ),
    "close_before_response": (
        "httpx.RemoteProtocolError",
        "httpx.RemoteProtocolError",
        "requests.ConnectionError",
        "urllib3.ProtocolError",
        "http.RemoteDisconnected",
        "aiohttp.ServerDisconnectedError (2 calls)",
    ),
    "partial_body": (
        "httpx.RemoteProtocolError",
        "httpx.RemoteProtocolError",
        "requests.ChunkedEncodingError",
        "urllib3.ProtocolError",
        "http.IncompleteRead",
        "aiohttp.ClientPayloadError",
    ),
    "bad_chunk": (
        "httpx.RemoteProtocolError",
        "httpx.RemoteProtocolError",
        "requests.ChunkedEncodingError",
        "urllib3.ProtocolError",
        "http.IncompleteRead",
        "aiohttp.ClientResponseError",
    ),
    "slow_body": (
        "httpx.ReadTimeout",
        "httpx.ReadTimeout",
        "requests.ConnectionError",
        "urllib3.ReadTimeoutError",
        "TimeoutError",
        "aiohttp.SocketTimeoutError",
    ),
}
# Where httpx on the wire (sync, HTTPS) raises other than the respx emulation, and why; every other fault agrees.
DIFFERENCES = {
    "write_timeout": "fires only for a request body larger than the socket buffers (2-3 MiB on loopback)",
    "connection_reset": "an RST under TLS reaches Python's ssl module as an unexpected EOF (plain HTTP: ReadError)",
}


def one_endpoint(fault: str, url: str = URL) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "measured",
            "flow": "m:f",
            "transport": "wire",
            "endpoints": [{"request": f"GET {url}", "responses": [{"fault": fault}]}],
        }
    )


@contextlib.contextmanager
def served(session: Session, scenario: Scenario, *, wire: bool = True) -> Iterator[Injector]:
    """``scenario``'s endpoints served on the wire (or through respx), with the guard redirecting declared hosts.

    The session's CA is trusted inside the block, as it is while a run goes on.
    """
    assert session.wire is not None
    clock = Clock()
    injector = Injector(scenario, clock, Recorder(clock), "http://127.0.0.1:9/api", mock_httpx=not wire)
    with (
        session.wire.authority.trusted(),
        injector,
        session.wire.serving(injector) as redirect,
        NetworkGuard(0).active(redirect) as guard,
    ):
        yield injector
    assert not guard.blocked


def table() -> str:
    """The measured table as the README prints it."""
    rows = ["| fault | " + " | ".join(CLIENTS) + " |", "|---" * (len(CLIENTS) + 1) + "|"]
    rows += [f"| `{fault}` | " + " | ".join(map(_cell, raised_by)) + " |" for fault, raised_by in MEASURED.items()]
    return "\n".join(rows)


def _cell(entry: str) -> str:
    name, _, note = entry.partition(" (")
    return f"`{name}`" + (f" ({note}" if note else "")


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("fault", list(MEASURED))
def test_each_fault_on_the_wire_raises_what_the_table_says(harness_session: Session, fault: str, client: str) -> None:
    """One real fault, one client, its own 0.2 s timeouts: the exception it raises is the table's."""
    with served(harness_session, one_endpoint(fault)) as injector:
        got = raised(CLIENTS[client], URL)
    calls = [(c.served, c.transport) for c in injector.calls]
    assert got + (f" ({len(calls)} calls)" if len(calls) > 1 else "") == MEASURED[fault][list(CLIENTS).index(client)]
    assert set(calls) == {(fault, "wire")}


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "pool_timeout"])
def test_httpx_on_the_wire_raises_what_the_respx_emulation_raises(harness_session: Session, fault: str) -> None:
    """The respx transport's ``FAULT_ERRORS`` match a real socket for httpx, but for the documented differences."""
    with served(harness_session, one_endpoint(fault), wire=False) as injector:
        emulated = raised(CLIENTS["httpx"], URL)
    assert [c.transport for c in injector.calls] == ["respx"]
    real = MEASURED[fault][0]
    if fault in DIFFERENCES:
        assert emulated != real, f"{fault} now agrees: drop it from DIFFERENCES and the README"
    else:
        assert emulated == real


def test_a_reset_on_plain_http_is_a_read_error_as_respx_emulates(harness_session: Session) -> None:
    """Without TLS the RST reaches httpx as the ``ReadError`` the respx transport raises."""
    url = "http://faults.test/x"
    with served(harness_session, one_endpoint("connection_reset", url)):
        assert raised(CLIENTS["httpx"], url) == exception_name(httpx.ReadError("x"))


def test_the_readme_prints_the_measured_table() -> None:
    """The README's fault x client table is this test's, so it cannot drift from what was measured."""
    assert table() in README.read_text()
