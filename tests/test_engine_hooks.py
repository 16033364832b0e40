"""Pins the private Prefect names the harness hooks: fails loudly if Prefect moves them."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import prefect.task_engine as task_engine

from harness.run.clock import Clock
from harness.run.hooks import hooked
from harness.run.internals import INTERNALS, prefect_version, resolve
from harness.run.states import Recorder


def _replaced() -> dict[str, Any]:
    """What every internal the table lists as replaced or wrapped is now."""
    return {
        i.where: getattr(*resolve(i.where))
        for i in INTERNALS
        if i.use != "read" and not i.by_source and i.applies(prefect_version()) and i.where.startswith("prefect.")
    }


def test_hooks_are_undone() -> None:
    """After a scenario every hooked name is Prefect's own again, also after an exception."""
    before = _replaced()
    clock = Clock()
    try:
        with hooked(clock, Recorder(clock)):
            assert task_engine.time is not time
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert _replaced() == before


def test_virtual_sleep_costs_no_wall_time() -> None:
    """The task engine's sleep, hooked, advances the virtual clock by the requested seconds."""
    clock = Clock()
    with hooked(clock, Recorder(clock)):
        started = time.perf_counter()
        task_engine.time.sleep(600)
        assert time.perf_counter() - started < 1
    assert clock.skipped == 600


def test_jitter_is_prefects_function_drawing_from_a_seeded_generator() -> None:
    """The task engine jitters through ``clamped_poisson_interval``; the harness's copy is seeded."""
    import random

    import prefect.utilities.math as prefect_math

    from harness.run.hooks import seeded_jitter

    assert task_engine.clamped_poisson_interval is prefect_math.clamped_poisson_interval
    assert "random.uniform(" in inspect.getsource(prefect_math.poisson_interval)
    draw = seeded_jitter(random.Random(7))
    first = [draw(10.0, 0.5) for _ in range(5)]
    draw = seeded_jitter(random.Random(7))
    assert [draw(10.0, 0.5) for _ in range(5)] == first
    assert len(set(first)) == 5 and all(0 < d <= 15.0 for d in first)  # within Prefect's upper clamp


AFTER_SESSION = """
import os, socket, ssl, sys, threading, urllib.request
sys.path.insert(0, os.getcwd())  # a run's working directory is its own: the flow's modules are found here
import aiohttp.connector
import certifi
import httpx._transports.default as httpx_default
import prefect.client.orchestration as orchestration
import prefect.context
import prefect.flows
import prefect.flow_engine as flow_engine
import prefect.futures
import prefect.task_engine as task_engine
import prefect.results as results
import prefect.utilities.timeout as prefect_timeout
from prefect.events.worker import EventsWorker
from prefect.futures import PrefectConcurrentFuture
from prefect.settings import get_current_settings
from prefect.task_runners import ThreadPoolTaskRunner
from harness import Session, load_file
from harness.run.internals import INTERNALS, prefect_version, resolve

def snapshot():
    return {
        # every internal the harness replaces or wraps (harness.run.internals)
        **{
            i.where: getattr(*resolve(i.where))
            for i in INTERNALS
            if i.use != "read" and not i.by_source and i.applies(prefect_version())
        },
        "socket.connect": socket.socket.connect,
        "socket.connect_ex": socket.socket.connect_ex,
        "socket.getaddrinfo": socket.getaddrinfo,
        "certifi.where": certifi.where(),
        "environ": {k: v for k, v in os.environ.items() if k.startswith(("PREFECT_", "SSL_", "REQUESTS_"))},
        "proxies": {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")},
        "ssl default verify paths": ssl.get_default_verify_paths(),
        "cwd": os.getcwd(),
        "settings": get_current_settings().model_dump_json(),
        "global settings": prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.model_dump_json(),
        "queue services": dict(EventsWorker._instances),
        "urllib opener": urllib.request._opener,
        "aiohttp context": aiohttp.connector._SSL_CONTEXT_VERIFIED,
        "aiohttp resolver": aiohttp.connector.DefaultResolver,
    }

os.environ["HTTPS_PROXY"] = "http://proxy.invalid:3128"  # cleared while a scenario runs, back afterwards
os.environ["HTTP_PROXY"] = "http://127.0.0.1:9"  # no no_proxy: the wait for the server must still go direct
os.environ.pop("NO_PROXY", None)
os.environ.pop("no_proxy", None)

before = snapshot()
(scenario,) = load_file("s.yaml")
exits = []
with Session() as session:
    for run in range(3):
        outcome = session.run(scenario)
        assert outcome.flow.name == "Completed", outcome.flow
        assert outcome.result == [1], outcome.result
        inside = sys.modules["snap"].SEEN.pop()  # what the flow saw, taken while it ran
        between = snapshot()
        changed = sorted(k for k in before if before[k] != between[k])
        assert not changed, ("between runs", run, changed)
        exits.append(len(threading._threading_atexits))
    # The session's events worker is set aside between runs, not started again for each (each start
    # registers an exit hook holding the run's context for the life of the process).
    assert exits[1] == exits[2], exits
    wire_folder, api_url = session.wire.folder, session.server.api_url
    assert (wire_folder / "ca.pem").exists()
after = snapshot()
changed = sorted(k for k in before if before[k] != after[k])
assert not changed, changed
assert not wire_folder.exists()  # the CA and every key removed with the session
bundle = str(wire_folder / "bundle.pem")
assert inside["environ"]["SSL_CERT_FILE"] == bundle and inside["certifi.where"] == bundle  # trusted in a run only
assert inside["ssl default verify paths"].cafile == bundle
assert inside["environ"]["PREFECT_API_URL"] == api_url
assert inside["settings"] != before["settings"] and inside["global settings"] != before["global settings"]
for where in ("prefect.client.orchestration:ssl", "httpx._transports.default:create_ssl_context"):
    assert inside[where] is not before[where], where  # the run did set its hooks
assert not inside["proxies"]
# Modules the flow imported first during a run keep no trace of the CA: requests (imported before the CA is
# trusted) and a library that kept certifi's path and function at import (given the real ones back).
import requests.adapters, requests.utils, lib_ca
assert requests.utils.DEFAULT_CA_BUNDLE_PATH == requests.adapters.DEFAULT_CA_BUNDLE_PATH == certifi.where()
assert lib_ca.WHERE is certifi.where and lib_ca.PATH == certifi.where()
print("as before")
"""

SNAP_FLOW = """
import httpx
from prefect import flow, task

SEEN = []

@task(retries=1)
def get(url):
    return httpx.get(url).json()["stargazers_count"]

@flow
def stars():
    from __main__ import snapshot
    import lib_ca, requests  # first imported during a run
    SEEN.append(snapshot())
    return [get("https://api.github.com/repos/o/r")]
"""

LIB_CA = """
import certifi
WHERE = certifi.where
PATH = certifi.where()
"""


def test_the_process_is_as_before_between_runs_and_once_a_session_ends(tmp_path: Path) -> None:
    """Every patch, setting, trusted CA and Prefect worker is set inside a run only; none is left between runs."""
    (tmp_path / "snap.py").write_text(SNAP_FLOW)
    (tmp_path / "lib_ca.py").write_text(LIB_CA)
    (tmp_path / "s.yaml").write_text(
        "name: s\nflow: snap:stars\nendpoints:\n"
        "  - request: GET https://api.github.com/repos/o/r\n"
        "    responses: [{status: 500}, {json: {stargazers_count: 1}}]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["HOME"] = str(tmp_path)  # Prefect's own ~/.prefect of this process, apart from the user's
    result = subprocess.run(
        [sys.executable, "-c", AFTER_SESSION], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("as before")
