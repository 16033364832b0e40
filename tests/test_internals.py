"""Every internal in the table is where it says, on the installed Prefect: a test per entry, named by it."""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from harness import UntestedPrefect
from harness.run import internals
from harness.run.internals import INTERNALS, Internal, InternalMissing, prefect_version, resolve

APPLYING = [i for i in INTERNALS if i.applies(prefect_version())]


def _function(where: str) -> Any:
    owner, name = resolve(where)
    return getattr(owner, name)


@pytest.mark.parametrize("internal", APPLYING, ids=lambda i: i.where + (f" ({i.prefect})" if i.prefect else ""))
def test_the_internal_is_where_the_table_says(internal: Internal) -> None:
    if not internal.by_source:
        try:
            owner, name = resolve(internal.where)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"{internal.where} ({internal.why}): its owner is gone: {exc}")
        assert hasattr(owner, name), f"{internal.where} ({internal.why}): no longer there"
    for function, text in internal.written:
        source = inspect.getsource(_function(function))
        assert text in source, f"{internal.where} ({internal.why}): {function} no longer says {text!r}"


def test_variants_of_an_internal_cover_every_supported_minor_once() -> None:
    """An internal with variants has exactly one for each minor; one entry alone may be for some minors only
    (an internal only they have)."""
    oldest, newest = (int(v.split(".")[1]) for v in (internals.OLDEST, internals.NEWEST))
    for where in {i.where for i in INTERNALS}:
        variants = [i for i in INTERNALS if i.where == where]
        for minor in range(oldest, newest + 1):
            found = [i for i in variants if i.applies((3, minor))]
            assert len(found) == (1 if len(variants) > 1 else len(found)) <= 1, (where, f"3.{minor}", found)


def test_replace_refuses_what_the_table_does_not_list_or_lists_as_read() -> None:
    with contextlib.ExitStack() as stack:
        with pytest.raises(InternalMissing, match="prefect.task_engine:nothing_of_that_name"):
            internals.replace(stack, "prefect.task_engine:nothing_of_that_name", None)
        with pytest.raises(InternalMissing, match="listed as read"):
            internals.replace(stack, "prefect.results:_default_storages", {})


def test_replace_is_undone_when_the_stack_closes_even_on_an_exception() -> None:
    import prefect.task_engine as task_engine

    real = task_engine.time
    with pytest.raises(RuntimeError), contextlib.ExitStack() as stack:
        assert internals.replace(stack, "prefect.task_engine:time", "stand-in") is real
        assert task_engine.time == "stand-in"
        raise RuntimeError
    assert task_engine.time is real


def test_a_property_inherited_from_a_base_class_is_inherited_again_afterwards() -> None:
    from prefect.futures import PrefectConcurrentFuture

    own = "state" in PrefectConcurrentFuture.__dict__
    with internals.replaced("prefect.futures:PrefectConcurrentFuture.state", property(lambda self: "x")):
        assert "state" in PrefectConcurrentFuture.__dict__
    assert ("state" in PrefectConcurrentFuture.__dict__) is own


def test_a_variant_applies_to_its_minors_only() -> None:
    older = Internal("m:a", "read", "", prefect="<3.8")
    newer = Internal("m:a", "read", "", prefect=">=3.8")
    assert [older.applies((3, m)) for m in (6, 7, 8, 9)] == [True, True, False, False]
    assert [newer.applies((3, m)) for m in (6, 7, 8, 9)] == [False, False, True, True]


@pytest.mark.parametrize("version", ["3.6.29", "3.10.0", "4.0.0"])
def test_an_untested_prefect_stops_with_the_range_and_the_opt_in(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    monkeypatch.delenv(internals.ALLOW_UNTESTED, raising=False)
    with pytest.raises(UntestedPrefect) as caught:
        internals.check_prefect()
    message = str(caught.value)
    assert f"Prefect {version} is installed" in message
    assert internals.SUPPORTED in message and "HARNESS_ALLOW_UNTESTED_PREFECT=1" in message
    monkeypatch.setenv(internals.ALLOW_UNTESTED, "1")
    with pytest.warns(UserWarning, match=f"Prefect {version} is installed"):
        internals.check_prefect()


def test_the_tested_prefect_passes_the_check() -> None:
    internals.check_prefect()
    assert f"{prefect_version()[0]}.{prefect_version()[1]}" in internals.TESTED


def test_the_package_allows_the_tested_range_and_no_other() -> None:
    requires = importlib.metadata.requires("prefect-fault-harness") or []
    (prefect,) = [Requirement(r) for r in requires if Requirement(r).name == "prefect"]
    assert prefect.specifier == SpecifierSet(internals.SUPPORTED)


def test_a_session_refuses_an_untested_prefect_before_it_starts_anything(tmp_path: Any) -> None:
    """Installed with --no-deps or upgraded afterwards: the first session says so, and starts no server."""
    script = textwrap.dedent(
        """
        import importlib.metadata
        real = importlib.metadata.version
        importlib.metadata.version = lambda name: "3.10.0" if name == "prefect" else real(name)
        from harness import Session
        try:
            Session()
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "UntestedPrefect" in result.stdout and "Prefect 3.10.0 is installed" in result.stdout, result


def test_what_the_replacements_assume_of_the_originals() -> None:
    """Beyond names: the hooks call Prefect's emitter by keyword, and stand in for the modules Prefect imported."""
    import time

    import anyio
    import prefect.flow_engine as flow_engine
    import prefect.task_engine as task_engine
    import prefect.utilities.timeout as prefect_timeout

    params = inspect.signature(task_engine.emit_task_run_state_change_event).parameters
    assert list(params) == ["task_run", "initial_state", "validated_state", "follows"]
    assert task_engine.time is time and task_engine.anyio is anyio  # the shims forward every other name
    assert flow_engine.timeout is prefect_timeout.timeout and flow_engine.timeout_async is prefect_timeout.timeout_async
    assert inspect.iscoroutinefunction(flow_engine.propose_state)
    assert not inspect.iscoroutinefunction(flow_engine.propose_state_sync)


def test_major_versions_other_than_3_take_the_newest_variant() -> None:
    assert Internal("m:a", "read", "", prefect=">=3.8").applies((4, 0))
    assert not Internal("m:a", "read", "", prefect="<3.8").applies((4, 0))
