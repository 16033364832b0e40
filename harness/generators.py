"""Hypothesis strategies for fault schedules and scenarios.

Named ``generators`` because a *strategy*, to this harness's users, is a
fault-tolerance strategy (retries, backoff, ...); these are Hypothesis
strategies that generate what a scenario declares:

- response steps, as YAML-ready dicts in the scenario language (what a
  scenario author writes, so a falsifying example reads as YAML and dumps with
  ``yaml.safe_dump``): ``transport_faults()``, ``error_answers()``,
  ``malformed_bodies()``, ``faulty_steps()`` (any of the three) and
  ``transient_steps()`` (faults a retry can outlive), each with an optional
  ``latency`` drawn by ``latencies()``. Every value validates as a
  ``harness.model.Step``;
- ``schedules()``: the list of faulty steps an endpoint serves *before* its
  healthy answer; ``function_faults(call)``: a failure a function target
  (``functions:``) raises, for its ``schedules`` before it calls through;
- ``endpoints()`` and ``scenarios()``: validated ``harness.model.Endpoint``
  and ``harness.model.Scenario`` objects, each endpoint serving a schedule of
  faults and then its healthy answer for ever.

Everything shrinks towards fewer faults, no latency, and the first choice of
each list: ``connect_timeout`` among faults, 400 among statuses, transport
faults before statuses before malformed bodies. ::

    from hypothesis import given
    from harness import generators as gen

    @given(gen.scenarios("github_stars", {"GET https://api.github.com/repos/o/r": {"json": {"stargazers_count": 1}}},
                         parameters={"repos": ["o/r"]}))
    def test_stars(harness_session, scenario): ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from harness.scenario.kinds import FILE_KINDS, SQLITE_KINDS
from harness.scenario.model import FAULTS, MALFORMED, Endpoint, Scenario, Step

ERROR_STATUSES = (400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504)
SERVER_ERRORS = tuple(s for s in ERROR_STATUSES if s >= 500)
MAX_FAULTS = 8


def _rounded(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(lambda s: round(s, 2))


def latencies(max_seconds: float = 60.0) -> st.SearchStrategy[Any]:
    """Latency as a scenario writes it: seconds, ``{uniform: [a, b]}`` or ``{lognormal: {median, sigma}}``."""
    seconds = _rounded(0.0, max_seconds)
    return st.one_of(
        seconds,
        st.tuples(seconds, seconds).map(lambda ab: {"uniform": sorted(ab)}),
        st.fixed_dictionaries({"median": _rounded(0.01, max_seconds), "sigma": _rounded(0.0, 2.0)}).map(
            lambda p: {"lognormal": p}
        ),
    )


def _maybe_latency(latency: bool) -> dict[str, st.SearchStrategy[Any]]:
    return {"latency": latencies()} if latency else {}


_KEY_ORDER = ("fault", "malformed", "status", "raise", "latency", "times")


def _ordered(step: dict[str, Any]) -> dict[str, Any]:
    """Keys in the order a scenario author writes them: what the step is, then its latency."""
    return {k: step[k] for k in sorted(step, key=_KEY_ORDER.index)}


def transport_faults(*, latency: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """``{fault: kind}``: a timeout or connection failure (the httpx exception a real one raises)."""
    return st.fixed_dictionaries({"fault": st.sampled_from(FAULTS)}, optional=_maybe_latency(latency)).map(_ordered)


def error_answers(
    statuses: tuple[int, ...] = ERROR_STATUSES, *, latency: bool = True
) -> st.SearchStrategy[dict[str, Any]]:
    """``{status: code}``: an error answer with no body, a 4xx or a 5xx by default."""
    return st.fixed_dictionaries({"status": st.sampled_from(statuses)}, optional=_maybe_latency(latency)).map(_ordered)


def malformed_bodies(*, latency: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """``{malformed: kind}``: a broken body, with status 200 unless an error status is drawn."""
    optional = {"status": st.sampled_from(ERROR_STATUSES), **_maybe_latency(latency)}
    return st.fixed_dictionaries({"malformed": st.sampled_from(MALFORMED)}, optional=optional).map(_ordered)


def faulty_steps(*, latency: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Any faulty step: a transport fault, an error status or a malformed body, in that shrinking order."""
    return st.one_of(
        transport_faults(latency=latency), error_answers(latency=latency), malformed_bodies(latency=latency)
    )


def transient_steps(*, latency: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Faults a retry can outlive: transport faults and 5xx answers."""
    return st.one_of(transport_faults(latency=latency), error_answers(SERVER_ERRORS, latency=latency))


def function_faults(call: str, *, latency: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """``{raise: kind}``: a ready kind a function target ``call`` can raise (SQLite's for ``sqlite3:*``, a
    file's for ``file:*``, ``partial_write`` for ``file:write`` only; any ready kind for another callable)."""
    family = call.split(":", 1)[0]
    kinds = list(SQLITE_KINDS) if family == "sqlite3" else list(FILE_KINDS) if family == "file" else []
    if family not in ("sqlite3", "file"):
        kinds = [*SQLITE_KINDS, *FILE_KINDS]
    if call != "file:write":
        kinds = [k for k in kinds if k != "partial_write"]
    return st.fixed_dictionaries({"raise": st.sampled_from(kinds)}, optional=_maybe_latency(latency)).map(_ordered)


def schedules(
    steps: st.SearchStrategy[dict[str, Any]] | None = None, *, max_faults: int = MAX_FAULTS
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """The faulty steps one endpoint serves, one call each, before its healthy answer (``faulty_steps`` by default)."""
    return st.lists(faulty_steps() if steps is None else steps, max_size=max_faults)


def _healthy(step: Step | Mapping[str, Any]) -> Step:
    return step if isinstance(step, Step) else Step.model_validate(dict(step))


def endpoints(
    request: str,
    healthy: Step | Mapping[str, Any],
    steps: st.SearchStrategy[dict[str, Any]] | None = None,
    *,
    max_faults: int = MAX_FAULTS,
) -> st.SearchStrategy[Endpoint]:
    """An ``Endpoint`` for ``request`` serving a schedule of faults, then ``healthy`` for ever."""
    answer = _healthy(healthy)
    return schedules(steps, max_faults=max_faults).map(
        lambda faults: Endpoint.model_validate({"request": request, "responses": [*faults, answer]})
    )


def scenarios(
    flow: str,
    healthy: Mapping[str, Step | Mapping[str, Any]],
    *,
    parameters: Mapping[str, Any] | None = None,
    expect: Mapping[str, Any] | None = None,
    steps: st.SearchStrategy[dict[str, Any]] | None = None,
    max_faults: int = MAX_FAULTS,
    name: str = "generated",
    seed: int = 0,
) -> st.SearchStrategy[Scenario]:
    """A ``Scenario`` of ``flow``: each endpoint (``request line -> healthy answer``) serves faults first.

    ``expect`` is the scenario's ``expect`` as YAML writes it, e.g.
    ``{"invariants": ["no_data_loss"]}``.
    """
    drawn = st.tuples(*(endpoints(r, h, steps, max_faults=max_faults) for r, h in healthy.items()))
    base = {
        "name": name,
        "flow": flow,
        "parameters": dict(parameters or {}),
        "seed": seed,
        "expect": dict(expect or {}),
    }
    return drawn.map(lambda eps: Scenario.model_validate({**base, "endpoints": list(eps)}))
