"""The wire transport: any client over real sockets, from the same schedules, never past loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Scenario, ScenarioError, Session, check, load_file
from harness.run.wire.backend import httpx_on_wire
from harness.run.wire.redirect import FAKE_PREFIX
from tests import wire_flows  # its module-level clients made now, outside any run

HOST = "https://api.wire.test"


def one_get(client: str, responses: str, *, url: str = f"{HOST}/items", extra: str = "") -> str:
    return (
        f"name: {client} over the wire\nflow: tests.wire_flows:one_get\n{extra}"
        f"parameters: {{client: {client}, url: '{url}'}}\n"
        f"endpoints:\n  - request: GET {HOST}/items\n    responses: {responses}\n"
    )


@pytest.mark.parametrize("client", ["requests", "urllib3", "urllib", "aiohttp", "httpx async"])
def test_clients_other_than_httpx_go_over_the_wire_by_themselves(
    harness_session: Session, scenario_from: Callable[[str], Scenario], client: str
) -> None:
    """A 503 then JSON over HTTPS from the session's CA: the task retries once and completes, each call on the wire."""
    wire = "transport: wire\n" if client.startswith("httpx") else ""
    scenario = scenario_from(one_get(client, "[{status: 503}, {json: {n: 1}}]", extra=wire))
    outcome = harness_session.run(scenario)
    assert outcome.flow.name == "Completed", outcome.flow
    assert [(c.served, c.status, c.transport) for c in outcome.calls] == [("503", 503, "wire"), ("200", 200, "wire")]
    assert outcome.tasks[0].retries == 1
    assert outcome.result == len(b'{"n":1}')


def test_httpx_stays_on_respx_unless_the_scenario_says_wire(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """The same scenario: respx by default, real sockets with ``transport: wire``; the calls say which."""
    text = one_get("httpx", "[{fault: connection_reset}, {json: {n: 1}}]")
    on_respx = harness_session.run(scenario_from(text))
    on_wire = harness_session.run(scenario_from(text.replace("flow:", "transport: wire\nflow:")))
    assert [c.transport for c in on_respx.calls] == ["respx", "respx"]
    assert [c.transport for c in on_wire.calls] == ["wire", "wire"]
    assert on_respx.flow.name == on_wire.flow.name == "Completed"


def test_httpx_on_wire_follows_the_scenario_then_the_session_default(
    scenario_from: Callable[[str], Scenario],
) -> None:
    """``transport:`` wins; else the session's default, except that a pool_timeout scenario stays on respx."""
    plain = scenario_from(one_get("httpx", "[{status: 200}]"))
    pooled = scenario_from(one_get("httpx", "[{fault: pool_timeout}]"))
    named = scenario_from(one_get("httpx", "[{status: 200}]", extra="transport: respx\n"))
    assert not httpx_on_wire(plain, "respx")
    assert httpx_on_wire(plain, "wire")
    assert not httpx_on_wire(pooled, "wire")
    assert not httpx_on_wire(named, "wire")


def test_a_connect_phase_fault_is_a_real_refusal_counted_for_its_endpoint(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """connect_error is refused by the kernel; the retry connects and is served; both count for the endpoint."""
    outcome = harness_session.run(scenario_from(one_get("requests", "[{fault: connect_error}, {json: {n: 1}}]")))
    assert outcome.flow.name == "Completed", outcome.flow
    assert outcome.counts == {f"GET {HOST}/items": 2}
    assert [c.served for c in outcome.calls] == ["connect_error", "200"]


def test_an_undeclared_request_on_the_wire_fails_naming_it_even_when_caught(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A declared host, an undeclared path: the flow catches what it gets, the scenario still fails naming it."""
    scenario = scenario_from(
        f"name: careless\nflow: tests.wire_flows:careless\nparameters: {{url: '{HOST}/other'}}\n"
        f"endpoints:\n  - request: GET {HOST}/items\n    responses: [{{status: 200}}]\n"
    )
    outcome = harness_session.run(scenario)
    assert outcome.flow.name == "Completed"
    assert [(c.method, c.url, c.transport) for c in outcome.unmatched] == [("GET", f"{HOST}/other", "wire")]
    (mismatch,) = [m for m in check(scenario, outcome) if m.field == "endpoints"]
    assert f"GET {HOST}/other" in str(mismatch)


def test_undeclared_hosts_stay_refused_while_declared_ones_are_served(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Only declared hosts resolve: any other name is a refused DNS lookup, named in the outcome."""
    scenario = scenario_from(
        "name: elsewhere\nflow: tests.wire_flows:careless\nparameters: {url: 'https://api.elsewhere.test/x'}\n"
        f"endpoints:\n  - request: GET {HOST}/items\n    responses: [{{status: 200}}]\n"
    )
    outcome = harness_session.run(scenario)
    assert outcome.result == "caught ConnectionError"
    assert outcome.blocked == ("a DNS lookup of api.elsewhere.test (port 443)",)
    assert outcome.calls == ()


def test_a_fake_address_of_no_declared_host_is_refused(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A raw connection to a fake address no host was given goes nowhere: the guard refuses it."""
    address = f"{FAKE_PREFIX}200"
    scenario = scenario_from(
        f"name: raw\nflow: tests.wire_flows:raw_connect\nparameters: {{address: '{address}', port: 443}}\n"
        f"endpoints:\n  - request: GET {HOST}/items\n    responses: [{{status: 200}}]\n"
    )
    outcome = harness_session.run(scenario)
    assert outcome.blocked == (f"a connection to {address}:443",)


def test_proxy_variables_are_cleared_while_a_scenario_runs(
    harness_session: Session, scenario_from: Callable[[str], Scenario], monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests and urllib honour HTTPS_PROXY: the flow sees none, and it is back after the run."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    outcome = harness_session.run(scenario_from("name: proxy\nflow: tests.wire_flows:proxy_flow\n"))
    assert outcome.result is None
    import os

    assert os.environ["HTTPS_PROXY"] == "http://proxy.invalid:3128"


def test_the_guard_is_the_standard_librarys_own_again_after_a_wire_scenario(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """Resolution and connections are unhooked after the run; a declared host no longer resolves."""
    before = (socket.socket.connect, socket.getaddrinfo)
    harness_session.run(scenario_from(one_get("requests", "[{json: {n: 1}}]")))
    assert (socket.socket.connect, socket.getaddrinfo) == before


INVALID = {
    "wire-only fault on respx": (
        "  - request: GET https://a.test/x\n    responses:\n      - fault: partial_body\n",
        "",
        ":6: endpoints[0].responses[0].fault: fault 'partial_body' exists only on a real connection: "
        "add `transport: wire`",
    ),
    "pool_timeout on the wire": (
        "  - request: GET https://a.test/x\n    responses:\n      - fault: pool_timeout\n",
        "transport: wire\n",
        ":7: endpoints[0].responses[0].fault: fault 'pool_timeout' is the client's own pool",
    ),
    "connect faults on two endpoints of one host": (
        "  - request: GET https://a.test/x\n    responses: [{fault: connect_error}]\n"
        "  - request: GET https://a.test/y\n"
        "    chaos: {rate: 0.5, faults: [{fault: connect_timeout}], otherwise: {}}\n",
        "transport: wire\n",
        ":7: endpoints[1].request: endpoints 0 and 1 of host 'a.test' both declare a connect-phase fault",
    ),
    "unknown transport": (
        "  - request: GET https://a.test/x\n    responses: [{}]\n",
        "transport: wires\n",
        ":3: transport",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_faults_a_transport_cannot_serve_are_validation_errors_naming_the_line(tmp_path: Path, case: str) -> None:
    """Each is a problem at its own line, with the fix."""
    endpoints, head, expected = INVALID[case]
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nflow: tests.flows:file_writer\n{head}endpoints:\n{endpoints}")
    (doc,) = load_file(path)
    assert isinstance(doc, ScenarioError)
    assert expected in str(doc)


def test_only_host_names_are_redirected_never_loopback_or_an_address(scenario_from: Callable[[str], Scenario]) -> None:
    """Endpoints on 127.0.0.1 (a stand-in API, Prefect's own) keep their address; names get a fake one each."""
    from harness.run.clock import Clock
    from harness.run.injector import Injector
    from harness.run.states import Recorder
    from harness.run.wire.redirect import Ports, Redirect

    scenario = scenario_from(
        "name: mixed\nflow: tests.flows:file_writer\nendpoints:\n"
        "  - request: GET http://127.0.0.1:8123/x\n    responses: [{}]\n"
        "  - request: GET http://localhost:8123/y\n    responses: [{}]\n"
        "  - request: GET https://A.test/z\n    responses: [{}]\n"
    )
    clock = Clock()
    redirect = Redirect(Injector(scenario, clock, Recorder(clock), "http://127.0.0.1:9/api"), Ports(1, 2, 3))
    assert redirect.addresses == {"a.test": f"{FAKE_PREFIX}1"}
    assert redirect.resolve("127.0.0.1") is None
    assert redirect.resolve("A.test.") == f"{FAKE_PREFIX}1"


def test_the_session_ca_is_added_to_what_the_process_trusted_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CA file the process trusted (a proxy's, named by SSL_CERT_FILE) stays trusted beside the session's."""
    import certifi
    import trustme

    from harness.run.wire.tls import Authority

    own = tmp_path / "corporate.pem"
    trustme.CA().cert_pem.write_to_path(str(own))
    monkeypatch.setenv("SSL_CERT_FILE", str(own))
    folder = tmp_path / "session"
    folder.mkdir()
    authority = Authority(folder)
    bundle = authority.bundle.read_bytes()
    assert own.read_bytes() in bundle
    assert Path(certifi.where()).read_bytes() in bundle
    assert authority.ca_file.read_bytes() in bundle


@pytest.mark.parametrize("flow", ["shared_client", "shared_async_client"])
def test_a_client_made_when_its_module_was_imported_trusts_the_session_ca(
    harness_session: Session, scenario_from: Callable[[str], Scenario], flow: str
) -> None:
    """A module-level httpx client built its SSL context before any run: it learns the CA at its first handshake."""
    assert wire_flows.SHARED is not None
    scenario = scenario_from(
        f"name: {flow}\nflow: tests.wire_flows:{flow}\ntransport: wire\nparameters: {{url: '{HOST}/items'}}\n"
        f"endpoints:\n  - request: GET {HOST}/items\n    responses: [{{status: 503}}, {{json: {{n: 1}}}}]\n"
    )
    outcome = harness_session.run(scenario)
    assert outcome.flow.name == "Completed", outcome.flow
    assert [(c.status, c.transport) for c in outcome.calls] == [(503, "wire"), (200, "wire")]
    assert outcome.result == len(b'{"n":1}')
