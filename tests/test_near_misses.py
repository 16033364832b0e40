"""A request that matches no endpoint names the closest declared ones and what differs, pytest-httpx style."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import Scenario, Session, check, run_scenario
from harness.checking.expectations import closest_endpoints, describe_failure, near_miss
from harness.scenario.model import RequestLine, parse_request

CAT = "https://api.github.com/repos/octo/cat"


def line(text: str) -> RequestLine:
    request: RequestLine = parse_request(text)
    return request


@pytest.mark.parametrize(
    ("declared", "method", "url", "differences"),
    [
        pytest.param(f"GET {CAT}", "GET", CAT, [], id="match"),
        pytest.param(f"GET {CAT}", "POST", CAT, ["method POST, not GET"], id="method"),
        pytest.param(f"GET {CAT}", "GET", CAT.replace("https", "http"), ["scheme http, not https"], id="scheme"),
        pytest.param(
            f"GET {CAT}",
            "GET",
            CAT.replace("api.github.com", "api.github.co"),
            ["host api.github.co, not api.github.com"],
            id="host",
        ),
        pytest.param(
            f"GET {CAT}",
            "GET",
            "https://api.github.com:8443/repos/octo/cat",
            ["host api.github.com:8443, not api.github.com"],
            id="port",
        ),
        pytest.param(f"GET {CAT}", "GET", CAT + "s", ["path /repos/octo/cats, not /repos/octo/cat"], id="path"),
        pytest.param(
            "GET https://h/x?size=3", "GET", "https://h/x?size=10", ["query size=10, not size=3"], id="query-value"
        ),
        pytest.param(
            "GET https://h/x?size=3", "GET", "https://h/x?q=a", ["query parameter size missing"], id="query-missing"
        ),
        pytest.param("GET https://h/x?size=3", "GET", "https://h/x?q=a&size=3", [], id="query-subset-matches"),
        pytest.param(
            "GET https://h/x?a=1&b=2",
            "GET",
            "https://h/x?a=2",
            ["query a=2, not a=1", "query parameter b missing"],
            id="two-params",
        ),
        pytest.param(
            "GET https://h/repos/*", "GET", "https://h/users/x", ["path /users/x, not /repos/*"], id="prefix-path"
        ),
        pytest.param("GET https://h/repos/*", "GET", "https://h/repos/x?y=1", [], id="prefix-matches"),
        pytest.param(
            "GET https://api.git*",
            "GET",
            "https://web.github.com/x",
            ["host web.github.com, not api.git*"],
            id="host-prefix",
        ),
        pytest.param("GET https://h/repos/*", "GET", "https://g/repos/x", ["host g, not h"], id="prefix-host"),
        pytest.param(
            f"GET {CAT}",
            "PUT",
            "http://example.com/repos/octo/cat",
            ["method PUT, not GET", "scheme http, not https", "host example.com, not api.github.com"],
            id="several",
        ),
    ],
)
def test_differences_name_each_part_that_differs(declared: str, method: str, url: str, differences: list[str]) -> None:
    """Method, scheme, host, path and each query parameter are named with the request's value first."""
    assert line(declared).differences(method, url) == differences


def test_differences_are_empty_exactly_when_the_line_matches() -> None:
    """Over a grid of request lines and requests, no difference means a match and a match means none."""
    lines = [
        f"GET {CAT}",
        "POST https://api.github.com/repos/*",
        "GET https://h/x?size=3&q=",
        "GET http://h:8080/",
        "GET https://api.git*",
        "GET https://h/search?q=*",
    ]
    requests = [
        ("GET", CAT),
        ("POST", CAT),
        ("GET", "https://h/x?q=&size=3&z=1"),
        ("GET", "https://h/x?size=3"),
        ("GET", "http://h:8080/"),
        ("GET", "http://h:8080"),
        ("GET", "https://api.github.com/x"),
        ("GET", "https://h/search?q=cats"),
        ("GET", "https://h/search?p=1"),
    ]
    for text in lines:
        for method, url in requests:
            request = line(text)
            assert (request.differences(method, url) == []) == request.matches(method, url), (text, method, url)


def test_fewer_differences_rank_first_then_the_more_alike_text() -> None:
    """A one-part miss beats a closer-looking two-part miss; between equals the more alike text wins."""
    lines = [
        line("POST https://api.github.com/repos/octo/cats"),
        line(f"GET {CAT}"),
        line("GET https://api.github.com/x"),
    ]
    assert [(r.text, d) for r, d in closest_endpoints("PUT", CAT + "s", lines)] == [
        ("POST https://api.github.com/repos/octo/cats", ["method PUT, not POST"])
    ]
    ((nearest, _),) = closest_endpoints("GET", "https://api.github.com/repos/octo/dog", lines)
    assert nearest.text == f"GET {CAT}"


def test_a_tie_shows_the_two_nearest() -> None:
    """Two endpoints as near as each other are both shown, in the order declared."""
    lines = [line("GET https://h/x?size=1"), line("GET https://h/x?size=2"), line("GET https://h/x?size=4")]
    assert near_miss("GET", "https://h/x?size=3", lines) == (
        "; closest: GET https://h/x?size=1 (query size=3, not size=1)"
        " or GET https://h/x?size=2 (query size=3, not size=2)"
    )


def test_no_declared_endpoint_adds_nothing() -> None:
    """Without endpoints there is nothing to be near."""
    assert near_miss("GET", CAT, []) == ""


def test_an_unmatched_request_names_its_near_miss_end_to_end(
    harness_session: Session, scenario_from: Callable[[str], Scenario]
) -> None:
    """A flow calling /octo/cats against a declared /octo/cat fails naming that endpoint and the path, everywhere."""
    s = scenario_from(f"""
name: near miss
flow: tests.flows:swallowing_flow
parameters: {{url: "{CAT}s"}}
endpoints:
  - request: GET https://api.github.com/users/octo
    responses: [{{status: 200}}]
  - request: GET {CAT}
    responses: [{{status: 200}}]
expect:
  flow: Completed
""")
    outcome = harness_session.run(s)
    assert outcome.result == "caught UnmatchedRequest"
    # `ping` retries once: two calls
    expected = f"GET {CAT}s matched none (2 calls); closest: GET {CAT} (path /repos/octo/cats, not /repos/octo/cat)"
    (mismatch,) = check(s, outcome)
    assert str(mismatch).endswith(f"observed {expected}")
    assert expected in describe_failure(s, outcome, [mismatch])  # what pytest prints
    result = run_scenario(harness_session, s)  # what `harness run` prints
    assert not result.passed
    assert any(f.endswith(expected) for f in result.failures), result.failures
