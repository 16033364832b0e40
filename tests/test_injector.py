"""The injector: steps in order, the last repeating, faults, malformed bodies, fail closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from harness import Scenario
from harness.run.clock import Clock
from harness.run.injector import Injector, UnmatchedRequest
from harness.run.states import Recorder

API = "http://127.0.0.1:1/api"
URL = "https://api.example.test/items"


@contextmanager
def serving(scenario: Scenario) -> Iterator[tuple[Injector, Clock]]:
    clock = Clock()
    with Injector(scenario, clock, Recorder(clock), API) as injector:
        yield injector, clock


@pytest.fixture
def scenario(scenario_from: Callable[[str], Scenario]) -> Callable[[str], Scenario]:
    def make(endpoints: str, seed: int = 0) -> Scenario:
        return scenario_from(
            f"name: s\nflow: github_stars\nparameters: {{repos: []}}\nseed: {seed}\nendpoints:\n{endpoints}"
        )

    return make


def statuses(n: int, url: str = URL) -> list[int | str]:
    out: list[int | str] = []
    for _ in range(n):
        try:
            out.append(httpx.get(url).status_code)
        except httpx.TransportError as exc:
            out.append(type(exc).__name__)
    return out


def test_steps_are_served_in_order_and_the_last_repeats(scenario: Callable[..., Scenario]) -> None:
    """`times` serves a step several calls; the last step serves every call after."""
    s = scenario(f"""
  - request: GET {URL}
    responses:
      - {{status: 500, times: 2}}
      - {{fault: read_timeout}}
      - {{status: 200, json: {{ok: true}}}}
""")
    with serving(s) as (injector, _):
        assert statuses(6) == [500, 500, "ReadTimeout", 200, 200, 200]
    assert injector.counts() == {f"GET {URL}": 6}
    assert [c.served for c in injector.calls] == ["500", "500", "read_timeout", "200", "200", "200"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("connect_timeout", httpx.ConnectTimeout),
        ("read_timeout", httpx.ReadTimeout),
        ("write_timeout", httpx.WriteTimeout),
        ("pool_timeout", httpx.PoolTimeout),
        ("connect_error", httpx.ConnectError),
        ("connection_reset", httpx.ReadError),
        ("remote_protocol_error", httpx.RemoteProtocolError),
    ],
)
def test_each_fault_raises_the_httpx_exception_of_the_real_failure(
    scenario: Callable[..., Scenario], fault: str, error: type[Exception]
) -> None:
    """A fault raises what httpx raises for that network failure, and still counts as a call."""
    s = scenario(f"  - request: GET {URL}\n    responses: [{{fault: {fault}}}]\n")
    with serving(s) as (injector, _), pytest.raises(error):
        httpx.get(URL)
    assert injector.counts()[f"GET {URL}"] == 1


def test_malformed_bodies(scenario: Callable[..., Scenario]) -> None:
    """Each malformed body breaks JSON parsing as real broken answers do; wrong_content_type still parses."""
    s = scenario(f"""
  - request: GET {URL}
    responses:
      - {{malformed: truncated_json, json: {{stargazers_count: 42, name: prefect}}}}
      - {{malformed: invalid_json}}
      - {{malformed: html, status: 502}}
      - {{malformed: empty_body}}
      - {{malformed: random_bytes}}
      - {{malformed: wrong_content_type, json: {{a: 1}}}}
""")
    with serving(s):
        bodies = [httpx.get(URL) for _ in range(6)]
    for response in bodies[:5]:
        with pytest.raises(ValueError):  # JSONDecodeError, or UnicodeDecodeError for random bytes
            response.json()
    assert bodies[0].text == '{"stargazers_count": 42, "name": "prefect"}'[:21]
    assert bodies[2].status_code == 502 and "text/html" in bodies[2].headers["content-type"]
    assert bodies[3].content == b""
    assert bodies[5].json() == {"a": 1} and bodies[5].headers["content-type"].startswith("text/html")


def test_first_declared_endpoint_wins_and_queries_match_as_subsets(scenario: Callable[..., Scenario]) -> None:
    """A prefix endpoint declared first takes every call it matches; a query matches as a subset."""
    s = scenario("""
  - request: GET https://api.example.test/search?size=3
    responses: [{status: 201}]
  - request: GET https://api.example.test/*
    responses: [{status: 202}]
""")
    with serving(s) as (injector, _):
        assert httpx.get("https://api.example.test/search", params={"size": 3, "q": "x"}).status_code == 201
        assert httpx.get("https://api.example.test/search", params={"size": 4}).status_code == 202
        assert httpx.get("https://api.example.test/other").status_code == 202
    assert list(injector.counts().values()) == [1, 2]


def test_unmatched_request_is_refused_and_logged(scenario: Callable[..., Scenario]) -> None:
    """A request no endpoint declares never leaves the process: it raises and is logged as unmatched."""
    s = scenario(f"  - request: GET {URL}\n    responses: [{{status: 200}}]\n")
    with serving(s) as (injector, _), pytest.raises(UnmatchedRequest, match="no endpoint declared for POST"):
        httpx.post("https://elsewhere.invalid/x")
    assert [(c.method, c.url) for c in injector.unmatched] == [("POST", "https://elsewhere.invalid/x")]


def test_latency_advances_the_virtual_clock_only(scenario: Callable[..., Scenario]) -> None:
    """Latency costs virtual seconds, and a client read timeout shorter than it raises ReadTimeout."""
    s = scenario(f"  - request: GET {URL}\n    responses: [{{status: 200, latency: 30}}]\n")
    with serving(s) as (_, clock):
        httpx.get(URL, timeout=None)
        assert 30 <= clock.now() < 31
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(URL)  # httpx's default timeout is 5 s
        assert 35 <= clock.now() < 36


def test_chaos_is_seeded(scenario: Callable[..., Scenario]) -> None:
    """The same seed gives the same schedule; another seed gives another."""
    endpoints = f"""
  - request: GET {URL}
    chaos:
      rate: 0.5
      faults: [{{status: 503}}, {{fault: connect_error}}]
      otherwise: {{status: 200}}
"""

    def schedule(seed: int) -> list[int | str]:
        with serving(scenario(endpoints, seed=seed)):
            return statuses(40)

    first = schedule(7)
    assert first == schedule(7)
    assert first != schedule(8)
    assert {200, 503, "ConnectError"} <= set(first)
    assert 8 <= first.count(200) <= 32


def test_scripted_steps_then_chaos(scenario: Callable[..., Scenario]) -> None:
    """Chaos declared after responses takes over once the scripted steps are spent."""
    s = scenario(f"""
  - request: GET {URL}
    responses: [{{status: 500, times: 2}}]
    chaos: {{rate: 0.0, faults: [{{status: 503}}], otherwise: {{status: 204}}}}
""")
    with serving(s):
        assert statuses(4) == [500, 500, 204, 204]


def test_until_serves_a_step_for_a_window_of_virtual_time(scenario: Callable[..., Scenario]) -> None:
    """A step with `until` answers every call until that virtual second, then gives way."""
    s = scenario(f"""
  - request: GET {URL}
    responses:
      - {{status: 429, until: 60}}
      - {{status: 200}}
""")
    with serving(s) as (_, clock):
        assert statuses(3) == [429, 429, 429]
        clock.sleep(60)
        assert statuses(2) == [200, 200]
