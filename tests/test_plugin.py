"""The pytest plugin end to end, in a subprocess (respx patches the process once)."""

from __future__ import annotations

import re

import pytest

# A pytest traceback entry inside the harness package, e.g. "harness/run/session.py:120: in run".
HARNESS_FRAME = re.compile(r"harness/(\w+/)*\w+\.py:\d+: ")

PASSING = """
name: stars recover
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 500}, {json: {stargazers_count: 7}}]
expect:
  flow: Completed
  result: [7]
  tasks: {get_stars: {state: Completed, retries: 1}}
  calls: {GET https://api.github.com/repos/octo/cat: 2}
"""

FAILING = """
name: stars expectation wrong
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 404, json: {message: Not Found}}]
expect:
  flow: Completed
  tasks:
    get_stars: {state: Failed, retries: 2}
  calls:
    GET https://api.github.com/repos/octo/cat: 1
"""

XFAIL = """
name: known weakness
flow: github_stars
parameters: {repos: [octo/cat]}
xfail: the seed flow does not survive a permanent 404
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses: [{status: 404, json: {message: Not Found}}]
expect:
  invariants: [completes]
"""

INVALID = """
name: bad step
flow: github_stars
parameters: {repos: [octo/cat]}
endpoints:
  - request: GET https://api.github.com/repos/octo/cat
    responses:
      - fault: read_timout
"""


def test_scenarios_are_items_and_failures_read_in_scenario_terms(pytester: pytest.Pytester) -> None:
    """Each document is an item; a failure lists every mismatch with file:line and the call log."""
    pytester.makefile(".yaml", **{"scenarios/stars": PASSING + "---" + FAILING + "---" + XFAIL})
    pytester.makefile(".yaml", **{"scenarios/broken": INVALID})
    pytester.makefile(".yaml", **{"other/not_a_scenario": "just: data"})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1, failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*scenario 'stars expectation wrong' (*stars.yaml:*) did not do what it expects:",
            "*stars.yaml:*: expect.flow: expected Completed, observed Failed",
            "*stars.yaml:*: expect.tasks.get_stars.retries: expected 2, observed 3",
            "*stars.yaml:*: expect.calls[[]GET https://api.github.com/repos/octo/cat[]]: expected 1, observed 4",
            "*calls  GET https://api.github.com/repos/octo/cat: 4  [[]404, 404, 404, 404[]]",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*broken.yaml:7: endpoints[[]0[]].responses[[]0[]].fault: unknown fault 'read_timout';"
            " did you mean 'read_timeout'?",
        ]
    )
    assert not HARNESS_FRAME.search(result.stdout.str()), "a traceback from the harness's insides"


def test_yaml_syntax_error_is_a_collection_error_without_traceback(pytester: pytest.Pytester) -> None:
    """A file that is not YAML fails collection with file and line, and nothing else runs from it."""
    pytester.makefile(".yaml", **{"scenarios/syntax": "name: x\nflow: [github_stars\n"})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*syntax.yaml:2: invalid YAML*"])
    assert "Traceback" not in result.stdout.str()
    assert not HARNESS_FRAME.search(result.stdout.str())


def test_unexpected_pass_of_xfail_scenario_fails(pytester: pytest.Pytester) -> None:
    """``xfail`` is strict: a scenario that no longer fails turns red."""
    pytester.makefile(
        ".yaml", **{"scenarios/fixed": PASSING.replace("name: stars recover", "name: fixed\nxfail: was broken")}
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*XPASS(strict)*"])


def test_scenario_selects_items_by_name_with_spaces_its_variants_and_globs(pytester: pytest.Pytester) -> None:
    """``--scenario``: an exact name (spaces and all, unlike ``-k``) with its strategy variants, one variant, a
    glob; parametrized test cases by their id; a name that selects nothing is a usage error."""
    pytester.makefile(
        ".yaml",
        **{
            "scenarios/stars": PASSING + "strategies:\n  retried:\n    retries: 3\n    retry_delay_seconds: 0\n"
            "    expect:\n      flow: Completed\n      result: [7]\n"
            "      tasks: {get_stars: {state: Completed, retries: 1}}\n"
            "      calls: {GET https://api.github.com/repos/octo/cat: 2}\n---\n" + XFAIL
        },
    )
    pytester.makepyfile(
        test_cases="import pytest\n\n@pytest.mark.parametrize('n', [1, 2], ids=['one case', 'two cases'])\n"
        "def test_case(n):\n    assert n\n"
    )
    run = pytester.runpytest_subprocess
    both = run("-p", "no:cacheprovider", "--scenario", "stars recover")
    both.assert_outcomes(passed=2)

    def selected(*args: str) -> list[str]:  # what a run would run: the same selection, no server started
        listed = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", *args)
        return sorted(line.split("::", 1)[1] for line in listed.outlines if "::" in line)

    assert selected("--scenario", "stars recover[retried]") == ["stars recover[retried]"]
    assert selected("--scenario", "known *", "--scenario", "one case") == ["known weakness", "test_case[one case]"]
    nothing = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--scenario", "stars recovered")
    assert nothing.ret == pytest.ExitCode.USAGE_ERROR
    assert "--scenario 'stars recovered' selects no item" in nothing.stderr.str()
