"""Recording a live run as a scenario, against an API stand-in on loopback: no secret in the file, and it replays."""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml

from harness import Session
from harness.cli import main
from harness.record import _ordered, _request_line, _Secrets, connect_targets, record
from harness.run import session as session_module

TOKEN = "tok-7f3a9c1e5b2d"
API_KEY = "key-4c8e2a6f0d1b"
COOKIE = "sess-9b7d5f3a1c0e"
OWNER_TOKEN = "own-2e4f6a8c0b1d"
SECRETS = (TOKEN, API_KEY, COOKIE, OWNER_TOKEN)
JOB_STATES = ("queued", "queued", "running", "done")


class _Handler(BaseHTTPRequestHandler):
    """The stand-in API: a bearer token required, a cookie set on every answer, rate-limit headers."""

    server: _Server

    def do_GET(self) -> None:
        if self.path == "/v1/slow":
            time.sleep(0.8)  # longer than its client waits (0.3 s): that client's own timeout is the point
            return self._send(200, {"n": 1})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"message": "Bad credentials"})
        url = urlsplit(self.path)
        if url.path == "/v1/items":
            if dict(parse_qsl(url.query)).get("api_key") != API_KEY:
                return self._send(403, {"message": "bad api key"})
            owner = {"login": "octo", "access_token": OWNER_TOKEN}
            return self._send(200, {"items": [{"id": 1}, {"id": 2}], "owner": owner})
        if url.path.startswith("/v1/items/"):
            item = int(url.path.rsplit("/", 1)[1])
            return self._send(200, {"id": item, "stock": 10 * item, "supplier": "ACME Supplies"})
        if url.path == "/v1/job":
            self.server.polls += 1
            return self._send(200, {"state": JOB_STATES[min(self.server.polls, len(JOB_STATES)) - 1]})
        if url.path == "/v1/catalog":
            return self._send(200, {"products": [{"sku": f"SKU-{i:05d}", "price": i} for i in range(2000)]})
        return self._send(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"message": "Bad credentials"})
        note = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["note"]
        return self._send(201, {"saved": note.upper()})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        if "gzip" in self.headers.get("Accept-Encoding", ""):  # as real APIs do: the recording keeps it decoded
            data = gzip.compress(data)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", f"session={COOKIE}; Path=/; HttpOnly")
        self.send_header("X-RateLimit-Remaining", "4999")
        self.send_header("ETag", '"v1"')
        self.send_header("X-Request-Id", "req-0001")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    polls = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up before the answer (its own timeout): the API writes to nobody
        super().handle_error(request, client_address)


class StandIn:
    """The stand-in API, served from a thread on 127.0.0.1 until ``stop``; over TLS given a server context."""

    def __init__(self, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.server = _Server(("127.0.0.1", port), _Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self._thread.join()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    api = StandIn()
    yield api
    api.stop()


class _Shared:
    """The test session's ``Session``, for the CLI: started and closed by pytest, not by the command."""

    def __init__(self, session: Session) -> None:
        self.run = session.run

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


Harness = Callable[..., tuple[int, str, str]]


@pytest.fixture
def harness(
    harness_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Harness]:
    """``harness ARGS`` in this process, on the test session's server, in ``tmp_path``: (exit code, out, err)."""
    monkeypatch.setattr(session_module, "Session", lambda **_: _Shared(harness_session))
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "CRITICAL")
    # The command sets that before Prefect's logging is configured; in this process an earlier test may have
    # configured it already, so its loggers are quieted here as the command's own process would have them.
    harness_session._ensure_ready()  # Prefect configures its logging again when the session is first ready
    loggers = [logging.getLogger(name) for name in ("prefect", "prefect.flow_runs", "prefect.task_runs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)  # setLevel, not the attribute: it clears the loggers' level cache
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def _parameters(api: StandIn | str, **more: Any) -> str:
    base = api.url if isinstance(api, StandIn) else api
    return json.dumps({"base_url": base, "token": TOKEN, **more})


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_record_then_run_then_explore_with_the_api_gone(harness: Harness, stand_in: StandIn) -> None:
    """The loop of the README: a recording with no token nor cookie replays green, and explore shrinks a break."""
    code, out, err = harness(
        "record",
        "tests.live_flows:inventory",
        "--parameters",
        _parameters(stand_in, api_key=API_KEY),
        "--out",
        "inventory.yaml",
        "--redact",
        "supplier",
    )
    assert (code, err) == (0, ""), out
    assert "recorded 3 request(s) to 3 endpoint(s)" in out
    stand_in.stop()
    assert _refused(stand_in.port)
    text = Path("inventory.yaml").read_text()
    for secret in (*SECRETS, "ACME", "session=", "req-0001"):
        assert secret not in text
    assert "authorization" not in text.lower() and "cookie" not in text.lower()
    doc = yaml.safe_load(text)
    items = f"GET {stand_in.url}/v1/items?page=1"  # api_key dropped: any value matches
    one, two = f"GET {stand_in.url}/v1/items/1", f"GET {stand_in.url}/v1/items/2"
    assert [e["request"] for e in doc["endpoints"]] == [items, one, two]
    first = doc["endpoints"][0]["responses"]
    assert first == [
        {
            "status": 200,
            "headers": {
                "content-type": "application/json; charset=utf-8",
                "x-ratelimit-remaining": "4999",
                "etag": '"v1"',
            },
            "json": {"items": [{"id": 1}, {"id": 2}], "owner": {"login": "octo", "access_token": "REDACTED"}},
        }
    ]
    assert doc["endpoints"][1]["responses"][0]["json"] == {"id": 1, "stock": 10, "supplier": "REDACTED"}
    assert doc["expect"] == {
        "flow": "Completed",
        "result": 30,
        "tasks": {
            "list_items": {"state": "Completed", "retries": 0},
            "stock_of": {"runs": 2, "state": "Completed", "retries": 0},
        },
        "calls": {items: 1, one: 1, two: 1},
    }
    assert harness("validate", "inventory.yaml")[0] == 0
    code, out, _ = harness("run", "inventory.yaml")
    assert code == 0, out
    code, out, err = harness(
        "explore", "inventory.yaml", "--invariant", "completes", "--budget", "30", "--out", "found"
    )
    assert code == 1, out + err
    (found,) = Path("found").glob("*.yaml")
    faults = {
        e["request"]: [s for s in e["responses"] if "fault" in s or "malformed" in s or s.get("status", 200) >= 400]
        for e in yaml.safe_load(found.read_text())["endpoints"]
    }
    assert faults[items] == []  # its task retries once: one fault there breaks nothing
    assert sum(len(steps) for steps in faults.values()) == 1  # one fault on an item, whose task never retries


def test_a_request_answered_differently_each_time_becomes_ordered_steps(harness: Harness, stand_in: StandIn) -> None:
    """Four polls of one URL: one endpoint whose steps are the answers in order, equal neighbours merged."""
    code, out, err = harness(
        "record", "tests.live_flows:poll_job", "--parameters", _parameters(stand_in, polls=4), "--out", "job.yaml"
    )
    assert (code, err) == (0, ""), out
    stand_in.stop()
    doc = yaml.safe_load(Path("job.yaml").read_text())
    (endpoint,) = doc["endpoints"]
    assert [(s["json"]["state"], s.get("times", 1)) for s in endpoint["responses"]] == [
        ("queued", 2),
        ("running", 1),
        ("done", 1),
    ]
    assert doc["expect"]["result"] == list(JOB_STATES)
    assert doc["expect"]["tasks"] == {"job_state": {"runs": 4, "state": "Completed", "retries": 0}}
    assert harness("run", "job.yaml")[0] == 0


def test_lists_in_a_large_json_body_are_trimmed_to_max_body(harness: Harness, stand_in: StandIn) -> None:
    """A 2000-item list is halved until the body fits; the header says so, and the result is no longer asserted."""
    code, out, err = harness(
        "record",
        "tests.live_flows:catalog_size",
        "--parameters",
        _parameters(stand_in),
        "--out",
        "catalog.yaml",
        "--max-body",
        "4096",
    )
    assert (code, err) == (0, ""), out
    text = Path("catalog.yaml").read_text()
    doc = yaml.safe_load(text)
    body = doc["endpoints"][0]["responses"][0]["json"]
    kept = len(body["products"])
    assert 0 < kept < 2000
    assert len(json.dumps(body, separators=(",", ":"))) <= 4096
    assert f"JSON body trimmed to fit --max-body 4096: $.products: kept {kept} of 2000 items" in text.splitlines()[1]
    assert "result" not in doc["expect"]
    assert "# note: the result differed on replay" in text
    stand_in.stop()
    assert harness("run", "catalog.yaml")[0] == 0


def test_an_async_flow_is_recorded_through_httpx_async_client(
    harness_session: Session, stand_in: StandIn, tmp_path: Path
) -> None:
    """``httpx.AsyncClient`` on the event loop reaches the API while recording; httpx is as before afterwards."""
    sends = (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request)  # never patched
    out = tmp_path / "async.yaml"
    done = record(
        harness_session, "tests.live_flows:async_inventory", json.loads(_parameters(stand_in, items=[1, 2])), out
    )
    assert (done.requests, done.endpoints, done.flow_state) == (2, 2, "Completed")
    assert done.document["expect"]["result"] == 30
    assert TOKEN not in out.read_text()
    assert (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request) == sends


NAMED = "http://api.stand-in.test"  # a host name, which --connect-to sends to the stand-in
GAVE_UP = (
    f"harness record: GET {NAMED}/v1/slow failed while recording (ReadTimeout: the flow's client gave up "
    "waiting for the answer): record again when the API answers\n"
)


def _record_named(harness: Harness, flow: str, parameters: dict[str, Any], port: int, out: str) -> tuple[int, str, str]:
    """``harness record FLOW`` against ``NAMED``, its connections sent to ``127.0.0.1:PORT``."""
    pin = f"api.stand-in.test=127.0.0.1:{port}"
    return harness(
        "record", f"tests.live_flows:{flow}", "--parameters", json.dumps(parameters), "--connect-to", pin, "--out", out
    )


def test_requests_and_urllib_are_recorded_by_host_name_and_replay_with_the_api_gone(
    harness: Harness, stand_in: StandIn
) -> None:
    """Clients other than httpx go through the wire server, which forwards them; the file replays and explores."""
    parameters = {"base_url": NAMED, "token": TOKEN, "api_key": API_KEY}
    code, out, err = _record_named(harness, "clients_inventory", parameters, stand_in.port, "clients.yaml")
    assert (code, err) == (0, ""), out
    assert "recorded 3 request(s) to 3 endpoint(s)" in out
    stand_in.stop()
    text = Path("clients.yaml").read_text()
    for secret in (*SECRETS, "session=", "req-0001", "gzip"):
        assert secret not in text
    assert "authorization" not in text.lower() and "cookie" not in text.lower()
    assert f"--connect-to api.stand-in.test=127.0.0.1:{stand_in.port}" in text.splitlines()[0]
    doc = yaml.safe_load(text)
    items = f"GET {NAMED}/v1/items?page=1"
    one, two = f"GET {NAMED}/v1/items/1", f"GET {NAMED}/v1/items/2"
    assert [e["request"] for e in doc["endpoints"]] == [items, one, two]
    assert doc["endpoints"][1]["responses"] == [
        {
            "status": 200,
            "headers": {
                "content-type": "application/json; charset=utf-8",
                "x-ratelimit-remaining": "4999",
                "etag": '"v1"',
            },
            "json": {"id": 1, "stock": 10, "supplier": "ACME Supplies"},
        }
    ]
    assert doc["expect"] == {
        "flow": "Completed",
        "result": 30,
        "tasks": {
            "requests_items": {"state": "Completed", "retries": 0},
            "urllib_stock": {"runs": 2, "state": "Completed", "retries": 0},
        },
        "calls": {items: 1, one: 1, two: 1},
    }
    code, out, _ = harness("run", "clients.yaml")
    assert code == 0, out
    code, out, err = harness("explore", "clients.yaml", "--invariant", "completes", "--budget", "30", "--out", "found")
    assert code == 1, out + err
    (found,) = Path("found").glob("*.yaml")
    broken = [
        s
        for e in yaml.safe_load(found.read_text())["endpoints"]
        for s in e["responses"]
        if "fault" in s or "malformed" in s or s.get("status", 200) >= 400
    ]
    assert len(broken) == 1  # one fault on an item, whose task never retries


def test_aiohttp_over_tls_is_recorded_and_the_process_is_as_before(harness_session: Session, tmp_path: Path) -> None:
    """aiohttp to an HTTPS API: TLS ends at the wire server (the session's CA) and starts again to the real host."""
    assert harness_session.wire is not None
    tls = harness_session.wire.authority.context_for("api.stand-in.test")  # the stand-in's own certificate
    api = StandIn(tls)
    before = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex, dict(os.environ))
    try:
        done = record(
            harness_session,
            "tests.live_flows:aiohttp_inventory",
            {"base_url": "https://api.stand-in.test", "token": TOKEN, "items": [1, 2]},
            tmp_path / "tls.yaml",
            connect_to=[f"api.stand-in.test=127.0.0.1:{api.port}"],
        )
    finally:
        api.stop()
    assert (done.requests, done.endpoints, done.flow_state) == (2, 2, "Completed")
    assert [e["request"] for e in done.document["endpoints"]] == [
        "GET https://api.stand-in.test/v1/items/1",
        "GET https://api.stand-in.test/v1/items/2",
    ]
    assert done.document["expect"]["result"] == 30
    assert TOKEN not in (tmp_path / "tls.yaml").read_text()
    assert (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex, dict(os.environ)) == before


_REAL_CONNECT = socket.socket.connect  # as imported, before any session's guard


class _Proxy(BaseHTTPRequestHandler):
    """An HTTP proxy stand-in: takes absolute-form requests, sends them all to one upstream port, notes each."""

    server: _ProxyServer

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        self.server.credentials.append(self.headers.get("Proxy-Authorization", ""))
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=5)
        upstream.sock = socket.socket()  # another machine's connection: not through this process's guard
        _REAL_CONNECT(upstream.sock, ("127.0.0.1", self.server.upstream))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        upstream.request("GET", urlsplit(self.path)._replace(scheme="", netloc="").geturl(), headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding"):
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        upstream.close()

    def do_CONNECT(self) -> None:
        """A tunnel: whatever host it names, to the upstream port, bytes relayed both ways until either side ends."""
        self.server.seen.append(f"CONNECT {self.path}")
        self.server.credentials.append(self.headers.get("Proxy-Authorization", ""))
        upstream = socket.socket()
        _REAL_CONNECT(upstream, ("127.0.0.1", self.server.upstream))
        self.send_response(200)
        self.end_headers()
        self.wfile.flush()

        def relay(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=relay, args=(upstream, self.connection), daemon=True)
        back.start()
        relay(self.connection, upstream)
        back.join(timeout=5)
        upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ProxyServer(ThreadingHTTPServer):
    upstream = 0
    seen: list[str]
    credentials: list[str]


def test_the_api_is_reached_through_the_proxy_the_environment_named(
    harness_session: Session, stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``http_proxy`` set before the run: the forwarder goes through it, while the flow's clients see none."""
    proxy = _ProxyServer(("127.0.0.1", 0), _Proxy)
    proxy.upstream, proxy.seen, proxy.credentials = stand_in.port, [], []
    thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("http_proxy", f"http://alice:s%40cret@127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # Prefect's own API, as a proxied machine leaves it out
    monkeypatch.delenv("NO_PROXY", raising=False)
    try:
        done = record(
            harness_session,
            "tests.live_flows:clients_inventory",
            json.loads(_parameters(NAMED, api_key=API_KEY)),
            tmp_path / "proxied.yaml",
        )
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
    assert done.document["expect"]["result"] == 30
    assert [urlsplit(u).path for u in proxy.seen] == ["/v1/items", "/v1/items/1", "/v1/items/2"]
    assert all(u.startswith(f"{NAMED}/v1/items") for u in proxy.seen)
    assert set(proxy.credentials) == {"Basic " + base64.b64encode(b"alice:s@cret").decode()}


def test_https_goes_through_the_proxys_tunnel(
    harness_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``https_proxy``: a ``CONNECT`` tunnel with the proxy's credentials, TLS to the host inside it."""
    assert harness_session.wire is not None
    api = _tls_stand_in(harness_session.wire.authority)
    proxy = _ProxyServer(("127.0.0.1", 0), _Proxy)
    proxy.upstream, proxy.seen, proxy.credentials = api.port, [], []
    thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("https_proxy", f"http://bob:tunnel@127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    try:
        done = record(
            harness_session,
            "tests.live_flows:aiohttp_inventory",
            {"base_url": "https://api.stand-in.test", "token": TOKEN, "items": [1]},
            tmp_path / "tunnel.yaml",
        )
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
        api.stop()
    assert done.document["expect"]["result"] == 10
    assert proxy.seen == ["CONNECT api.stand-in.test:443"]
    assert proxy.credentials == ["Basic " + base64.b64encode(b"bob:tunnel").decode()]


def test_a_proxy_that_is_not_http_stops_the_recording_by_name(
    harness: Harness, stand_in: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``all_proxy=socks5://...``: the forwarder speaks HTTP to proxies only, so it says so rather than go around it."""
    monkeypatch.setenv("all_proxy", "socks5://proxy.example.test:1080")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    code, out, err = harness(
        "record", "tests.live_flows:impatient", "--parameters", json.dumps({"base_url": NAMED}), "--out", "s.yaml"
    )
    assert code == 2, out
    assert err == (
        f"harness record: could not reach GET {NAMED}/v1/slow (ConnectError: the proxy "
        "socks5://proxy.example.test is not an http:// proxy): is the host right and the API up?\n"
    )


def test_a_client_that_gives_up_on_a_host_that_never_answers_calls_the_connect_off(
    harness: Harness, tmp_path: Path
) -> None:
    """The real host drops every SYN (a full accept queue); the client's 0.3 s timeout ends the recording at once."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())  # the queue (backlog 0: one) is full: SYNs are dropped
        code, out, err = _record_named(
            harness, "impatient", {"base_url": NAMED}, listener.getsockname()[1], "never.yaml"
        )
    assert code == 2, out
    assert err == GAVE_UP


def test_a_client_trying_localhost_at_ipv6_first_goes_on_to_ipv4(
    harness_session: Session, stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``localhost`` resolving to ::1 first (as on most systems): refused there as by no listener, recorded at IPv4."""
    real = socket.getaddrinfo

    def ipv6_first(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        found = real(host, port, *args, **kwargs)
        if host != "localhost":
            return found
        v6 = [(socket.AF_INET6, kind, proto, "", ("::1", port, 0, 0)) for _, kind, proto, _, _ in found[:1]]
        return v6 + found

    monkeypatch.setattr(socket, "getaddrinfo", ipv6_first)  # before the run: what the guard takes as real
    done = record(
        harness_session,
        "tests.live_flows:inventory",
        json.loads(_parameters(f"http://localhost:{stand_in.port}", api_key=API_KEY)),
        tmp_path / "localhost.yaml",
    )
    assert done.document["expect"]["result"] == 30
    assert done.document["endpoints"][1]["request"] == f"GET http://localhost:{stand_in.port}/v1/items/1"


def _tls_stand_in(authority: Any) -> StandIn:
    return StandIn(authority.context_for("api.stand-in.test"))


def test_a_client_given_certifis_bundle_by_name_is_recorded_over_tls(harness_session: Session, tmp_path: Path) -> None:
    """``verify=certifi.where()`` trusts the session's CA while it runs, as the default trust does."""
    assert harness_session.wire is not None
    api = _tls_stand_in(harness_session.wire.authority)
    try:
        done = record(
            harness_session,
            "tests.live_flows:certifi_inventory",
            {"base_url": "https://api.stand-in.test", "token": TOKEN},
            tmp_path / "certifi.yaml",
            connect_to=[f"api.stand-in.test=127.0.0.1:{api.port}"],
        )
    finally:
        api.stop()
    assert done.document["expect"]["result"] == 30


def test_a_host_whose_certificate_does_not_verify_is_not_reached(harness_session: Session, tmp_path: Path) -> None:
    """The forwarder verifies the real host: a certificate of an unknown CA ends the recording, nothing written."""
    import trustme

    stranger = trustme.CA().issue_cert("api.stand-in.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    stranger.configure_cert(context)
    api = StandIn(context)
    try:
        with pytest.raises(
            ValueError, match=r"could not reach GET https://api.stand-in.test/v1/items/1 \(ConnectError: "
        ):
            record(
                harness_session,
                "tests.live_flows:aiohttp_inventory",
                {"base_url": "https://api.stand-in.test", "token": TOKEN, "items": [1]},
                tmp_path / "stranger.yaml",
                connect_to=[f"api.stand-in.test=127.0.0.1:{api.port}"],
            )
    finally:
        api.stop()
    assert not (tmp_path / "stranger.yaml").exists()


def test_an_answer_the_client_gave_up_on_is_no_answer(harness: Harness, stand_in: StandIn) -> None:
    """The client's own timeout (0.3 s) fires before the API answers (0.8 s): a failure, and no thread left behind."""
    before = {t for t in threading.enumerate() if t.name == "harness-wire-conn"}
    code, out, err = _record_named(harness, "impatient", {"base_url": NAMED}, stand_in.port, "impatient.yaml")
    assert code == 2, out
    assert err == GAVE_UP
    assert {t for t in threading.enumerate() if t.name == "harness-wire-conn"} <= before
    assert not Path("impatient.yaml").exists()


def test_a_connection_that_speaks_no_http_is_named(harness: Harness) -> None:
    """A database's protocol on port 5432: refused by name, exit 2, nothing written."""
    code, out, err = harness(
        "record", "tests.live_flows:database_ping", "--parameters", '{"host": "db.example.test"}', "--out", "db.yaml"
    )
    assert code == 2, out
    pytest.LineMatcher([err.rstrip("\n")]).fnmatch_lines(
        [
            "harness record: the flow made a connection to db.example.test:5432 that sent no HTTP request "
            "(not an HTTP request line: *), which cannot be recorded"
        ]
    )


def test_a_post_whose_client_waits_for_100_continue_is_recorded(harness: Harness, stand_in: StandIn) -> None:
    """aiohttp's ``expect100``: the server says 100 Continue, the body goes on to the API, the POST replays."""
    code, out, err = _record_named(
        harness, "note_taker", {"base_url": NAMED, "token": TOKEN, "note": "restock"}, stand_in.port, "note.yaml"
    )
    assert (code, err) == (0, ""), out
    doc = yaml.safe_load(Path("note.yaml").read_text())
    assert [(e["request"], e["responses"][0]["status"]) for e in doc["endpoints"]] == [(f"POST {NAMED}/v1/notes", 201)]
    assert doc["expect"]["result"] == "RESTOCK"
    stand_in.stop()
    assert harness("run", "note.yaml")[0] == 0


def test_connect_to_values_parse_and_a_name_resolves_once() -> None:
    """``HOST=ADDRESS:PORT``, the host lower-cased; ``localhost`` becomes its IPv4 address."""
    assert connect_targets(["API.Example.test.=localhost:8443", "b.test=10.0.0.7:80"]) == {
        "api.example.test": ("127.0.0.1", 8443),
        "b.test": ("10.0.0.7", 80),
    }
    with pytest.raises(ValueError, match="the port '99999' is not a port number"):
        connect_targets(["a.test=127.0.0.1:99999"])
    for host in ("api.test:8443", "https://api.test", "localhost"):  # never what a pin could match
        with pytest.raises(ValueError, match="HOST is a host name as the flow's URLs write it"):
            connect_targets([f"{host}=127.0.0.1:80"])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BAD_INPUT = {
    "unreachable host": (
        lambda api: [
            "tests.live_flows:inventory",
            "--parameters",
            _parameters(f"http://127.0.0.1:{_closed_port()}", api_key=API_KEY),
        ],
        "could not reach GET http://127.0.0.1:*/v1/items?page=1 (ConnectError: *",
    ),
    "raises before any request": (
        lambda api: ["tests.live_flows:raises_early", "--parameters", json.dumps({"base_url": api.url})],
        "flow 'tests.live_flows:raises_early' ended Failed before sending any request: *no credentials configured*",
    ),
    "a client other than httpx, on an address": (
        lambda api: ["tests.live_flows:stdlib_inventory", "--parameters", json.dumps({"base_url": api.url})],
        "the recording does not replay: a client other than httpx made a connection to 127.0.0.1:*, an address, "
        "and a replay serves other clients by host name only; *--connect-to HOST=ADDRESS:PORT",
    ),
    "a --connect-to without a port": (
        lambda api: ["tests.live_flows:inventory", "--connect-to", "api.example.test=127.0.0.1"],
        "--connect-to 'api.example.test=127.0.0.1': expected HOST=ADDRESS:PORT, e.g. api.example.com=127.0.0.1:8443",
    ),
    "a --connect-to to an IPv6 address": (
        lambda api: ["tests.live_flows:inventory", "--connect-to", "api.example.test=[::1]:80"],
        "--connect-to 'api.example.test=[[]::1]:80': cannot resolve '[[]::1]' to an IPv4 address *",
    ),
    "invalid JSON": (
        lambda api: ["tests.live_flows:inventory", "--parameters", "{base_url: x}"],
        "--parameters is not valid JSON (Expecting property name enclosed in double quotes: *",
    ),
    "parameters not an object": (
        lambda api: ["tests.live_flows:inventory", "--parameters", "[1, 2]"],
        "--parameters must be a JSON object of keyword arguments, got a list",
    ),
    "unknown parameter": (
        lambda api: ["tests.live_flows:inventory", "--parameters", json.dumps({"base_ur": api.url})],
        "parameters.base_ur: flow 'tests.live_flows:inventory' has no parameter 'base_ur'; did you mean 'base_url'?",
    ),
    "unknown flow": (
        lambda api: ["tests.live_flows:inventroy"],
        "flow: flow module 'tests.live_flows' has no attribute 'inventroy'; did you mean 'inventory'?",
    ),
}


@pytest.mark.parametrize("make, message", list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2_with_no_file(
    harness: Harness, stand_in: StandIn, tmp_path: Path, make: Callable[[StandIn], list[str]], message: str
) -> None:
    """Each refusal is one line on stderr, exit 2, and nothing is left in the output folder."""
    code, out, err = harness("record", *make(stand_in), "--out", "out/recorded.yaml")
    assert code == 2, out
    assert err.count("\n") == 1
    pytest.LineMatcher([err.rstrip("\n")]).fnmatch_lines([f"harness record: {message}"])
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_an_existing_file_is_refused_unless_forced(harness: Harness, stand_in: StandIn, tmp_path: Path) -> None:
    """``--out`` over an existing file exits 2 and leaves it alone; ``--force`` replaces it."""
    Path("job.yaml").write_text("kept\n")
    args = ("record", "tests.live_flows:poll_job", "--parameters", _parameters(stand_in, polls=1), "--out", "job.yaml")
    assert harness(*args) == (2, "", "harness record: job.yaml exists; pass --force to overwrite it\n")
    assert Path("job.yaml").read_text() == "kept\n"
    code, out, err = harness(*args, "--force")
    assert (code, err) == (0, ""), out
    assert yaml.safe_load(Path("job.yaml").read_text())["flow"] == "tests.live_flows:poll_job"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]  # no temporary file left beside it


@pytest.mark.parametrize(
    "url, line, dropped",
    [
        ("https://api.test/v1/q?page=2&api_key=s3cr3t-value", "GET https://api.test/v1/q?page=2", ["api_key"]),
        ("https://api.test/v1/q?access_token=abc&sig=zz&n=1", "GET https://api.test/v1/q?n=1", ["access_token", "sig"]),
        ("https://api.test/v1/q?page_token=abcdef&q=a+b", "GET https://api.test/v1/q?q=a+b", ["page_token"]),
        ("https://u:pw@api.test/v1?x-amz-signature=f00", "GET https://api.test/v1", ["x-amz-signature"]),
        ("https://api.test/v1?warehouse=7", "GET https://api.test/v1", ["warehouse"]),  # named by --redact
        ("https://api.test/v1?keyword=cat", "GET https://api.test/v1?keyword=cat", []),
    ],
)
def test_secret_query_parameters_leave_the_request_line(url: str, line: str, dropped: list[str]) -> None:
    """Secret parameters, by name or by suffix or named with --redact, are dropped; others are kept as sent."""
    secrets = _Secrets(frozenset({"warehouse"}))
    assert _request_line("GET", url, secrets) == line
    assert secrets.dropped.get(line, []) == dropped


def test_a_line_precedes_the_lines_whose_query_is_a_subset_of_its_own() -> None:
    """The first matching endpoint wins and queries match as subsets: the most specific line comes first."""
    lines = [
        "GET https://a.test/items",
        "GET https://a.test/other",
        "GET https://a.test/items?page=2",
        "POST https://a.test/items?x=1",
    ]
    assert _ordered(lines) == [
        "GET https://a.test/items?page=2",
        "GET https://a.test/items",
        "GET https://a.test/other",
        "POST https://a.test/items?x=1",
    ]


def test_a_secret_in_a_query_is_scrubbed_as_sent_and_as_decoded() -> None:
    """A dropped query secret is scrubbed wherever it recurs, percent-encoded (an echoed link) or not."""
    from harness.record import _request_line, _scrubbed, _Secrets

    secrets = _Secrets(())
    line = _request_line("GET", "https://api.example.test/v1/items?page=2&api_key=ab%2Fcd%2Bef%3D", secrets)
    assert line == "GET https://api.example.test/v1/items?page=2"
    body = {"next": "https://api.example.test/v1/items?page=3&api_key=ab%2Fcd%2Bef%3D", "echo": "ab/cd+ef="}
    assert _scrubbed(body, secrets) == {
        "next": "https://api.example.test/v1/items?page=3&api_key=REDACTED",
        "echo": "REDACTED",
    }
