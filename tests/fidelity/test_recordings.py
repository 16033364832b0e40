"""The recorded references hold: under ``--reference=live``, each recording says what plain Prefect does now.

A recording (``references.py``) stands in for a reference's live run in an ordinary test session. Here the
live run's results and the recording's must agree on everything the oracle compares but wall time, and on a
documented race, on what Prefect decides every time (``stable`` in each test module).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import prefect
import pytest

from harness.run.internals import NEWEST, TESTED
from tests.fidelity import test_api_fidelity, test_crash_fidelity, test_fidelity, test_function_fidelity
from tests.fidelity.references import REFERENCES, References, recording_path, sources_digest, staleness

pytestmark = pytest.mark.fidelity

Stable = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def compared(keys: tuple[str, ...]) -> Stable:
    """A reference result as its test compares it: these keys, as they are."""
    return lambda spec, result: {key: result[key] for key in keys}


MODULES: dict[str, tuple[list[dict[str, Any]], Stable]] = {
    "tests.fidelity.reference": (test_fidelity.ALL_CASES, test_fidelity.stable),
    "tests.fidelity.api_reference": (test_api_fidelity.API_CASES, compared(test_api_fidelity.KEYS)),
    "tests.fidelity.crash_reference": (test_crash_fidelity.CRASH_CASES, compared(test_crash_fidelity.KEYS)),
    "tests.fidelity.function_reference": (test_function_fidelity.FUNCTION_CASES, compared(test_function_fidelity.KEYS)),
}


def test_every_reference_has_its_cases_and_comparison() -> None:
    assert set(MODULES) == set(REFERENCES.values())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_recording_is_the_newest_tested_prefects_from_the_current_sources(module: str) -> None:
    """A case changed, or the newest tested Prefect moved on, and nobody recorded again: said here, in every run,
    not left to a session that quietly runs the reference live."""
    held = json.loads(recording_path(module).read_text())
    assert (held["prefect"], held["sources"]) == (TESTED[NEWEST], sources_digest()), (
        f"{recording_path(module).name} holds Prefect {held['prefect']} and sources {held['sources']}; "
        f"record again on Prefect {TESTED[NEWEST]}: python -m tests.fidelity.record"
    )
    cases, _ = MODULES[module]
    assert sorted(held["results"]) == sorted(c["name"] for c in cases)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_recording_is_what_plain_prefect_does_now(module: str, references: References) -> None:
    if not references.live:
        pytest.skip("compared with a live reference under --reference=live")
    path = recording_path(module)
    held = json.loads(path.read_text()) if path.exists() else {}
    if held and held["prefect"] != prefect.__version__ and prefect.__version__ != TESTED[NEWEST]:
        pytest.skip(f"recorded for Prefect {held['prefect']}, not for {prefect.__version__}")
    why = staleness(module)
    assert why is None, f"{why}: record again with python -m tests.fidelity.record"
    live = references.results(module)
    cases, stable = MODULES[module]
    assert sorted(held["results"]) == sorted(live) == sorted(c["name"] for c in cases)
    differ = {}
    for spec in cases:
        was, now = stable(spec, held["results"][spec["name"]]), stable(spec, live[spec["name"]])
        if was != now:
            differ[spec["name"]] = {"recorded": was, "live": now}
    assert not differ, f"{path.name} no longer says what plain Prefect does:\n" + json.dumps(differ, indent=1)
