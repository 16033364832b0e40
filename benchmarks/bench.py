"""Benchmark: the harness against the hand-written way of testing a Prefect flow.

Three sides, each in a fresh subprocess so that each pays its own start-up,
alternated and repeated (``--repeats``) so that a slow moment of the machine
does not fall on one side only:

- harness: a ``harness.Session`` (template database, tuned settings);
- hand-written, default settings: ``prefect_test_harness()`` plus respx;
- hand-written, heartbeats off: the same, with the one setting that costs most
  (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` = None) turned off by hand, as a user could.

Each side runs the same one-retry github_stars scenario ``--runs`` times; the
figures are the per-run medians, as min / median / max over the repeats,
and their ratios, with how much of a harness run is spent blocked on the
Prefect API's answers (Prefect's own calls: the harness makes none). Also:
the harness's session start with a warm template database and with a cold
cache (no template: migrations run), three retries 600 s apart (virtual
against wall time), and the whole library through ``harness run``, start
included.

Usage: ``python benchmarks/bench.py [--runs N] [--repeats K]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ONE_RETRY = """
name: one retry
flow: github_stars
parameters: {repos: [PrefectHQ/prefect]}
endpoints:
  - request: GET https://api.github.com/repos/PrefectHQ/prefect
    responses: [{status: 500}, {json: {stargazers_count: 42}}]
expect:
  tasks: {get_stars: {state: Completed, retries: 1}}
---
name: one retry on the wire
flow: github_stars
transport: wire
parameters: {repos: [PrefectHQ/prefect]}
endpoints:
  - request: GET https://api.github.com/repos/PrefectHQ/prefect
    responses: [{status: 500}, {json: {stargazers_count: 42}}]
expect:
  tasks: {get_stars: {state: Completed, retries: 1}}
"""

HARNESS_SIDE = """
import json, sys, time
t0 = time.perf_counter()
import httpcore._backends.sync
from harness import Session, load_file, check
session = Session()
session.start()
scenarios = {s.name: s for s in load_file(sys.argv[1]) + load_file(sys.argv[2])}
session._ensure_ready()
start_s = time.perf_counter() - t0
# The time blocked reading the Prefect API's answers: in a respx run, the only socket reads there are.
read, waited = httpcore._backends.sync.SyncStream.read, [0.0]
def timed_read(self, *args, **kwargs):
    t = time.perf_counter()
    try:
        return read(self, *args, **kwargs)
    finally:
        waited[0] += time.perf_counter() - t
httpcore._backends.sync.SyncStream.read = timed_read
runs, api, wire, whole = [], [], [], []
for _ in range(int(sys.argv[3])):  # the same scenario through respx and over the wire, side by side
    for name, into in (("one retry", runs), ("one retry on the wire", wire)):
        waited[0] = 0.0
        t = time.perf_counter()
        outcome = session.run(scenarios[name])
        if into is runs:  # the whole call: the run's scope (settings, trust, workers drained) set and undone
            whole.append(time.perf_counter() - t)
        assert not check(scenarios[name], outcome)
        into.append(outcome.wall_s)
        if into is runs:
            api.append(waited[0])
slow = session.run(scenarios["three ten-minute retry delays take half an hour of virtual time"])
session.close()
slow_figures = [slow.wall_s, slow.virtual_s, slow.flow.name]
print(json.dumps({"start_s": start_s, "runs": runs, "api": api, "wire": wire, "whole": whole, "slow": slow_figures}))
"""

HAND_WRITTEN_SIDE = """
import contextlib, json, sys, time
t0 = time.perf_counter()
import httpx, respx
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from harness.flows.github import github_stars
URL = "https://api.github.com/repos/PrefectHQ/prefect"
heartbeat_off = sys.argv[2] == "heartbeat-off"
settings = temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}) if heartbeat_off else contextlib.nullcontext()
with prefect_test_harness(), settings:
    start_s = time.perf_counter() - t0
    runs = []
    for _ in range(int(sys.argv[1])):
        with respx.mock(assert_all_called=False) as router:
            router.route(host="127.0.0.1").pass_through()
            router.get(URL).mock(side_effect=[httpx.Response(500), httpx.Response(200, json={"stargazers_count": 42})])
            t = time.perf_counter()
            state = github_stars(["PrefectHQ/prefect"], return_state=True)
            runs.append(time.perf_counter() - t)
            assert state.is_completed(), state
print(json.dumps({"start_s": start_s, "runs": runs}))
"""


def side(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    extra = {"PREFECT_LOGGING_LEVEL": "CRITICAL", **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **extra},
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"benchmark side failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    """min / median / max of ``values``."""
    lo, mid, hi = (v * scale for v in (min(values), statistics.median(values), max(values)))
    return f"{lo:8.1f} {mid:8.1f} {hi:8.1f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="flow runs per process (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per side, alternated (default 3)")
    args = parser.parse_args()
    one = ROOT / "benchmarks" / "_one_retry.yaml"
    one.write_text(ONE_RETRY)
    library_file = str(ROOT / "scenarios" / "user_flows.yaml")
    medians: dict[str, list[float]] = {"harness": [], "hand, default": [], "hand, heartbeat off": []}
    starts: dict[str, list[float]] = {key: [] for key in medians}
    wire: list[float] = []
    api: list[float] = []
    whole: list[float] = []
    try:
        for _ in range(args.repeats):
            harness = side(HARNESS_SIDE, str(one), library_file, str(args.runs))
            default = side(HAND_WRITTEN_SIDE, str(args.runs), "default")
            off = side(HAND_WRITTEN_SIDE, str(args.runs), "heartbeat-off")
            wire.append(statistics.median(harness["wire"]))
            api.append(statistics.median(harness["api"]))
            whole.append(statistics.median(harness["whole"]))
            for key, result in (("harness", harness), ("hand, default", default), ("hand, heartbeat off", off)):
                medians[key].append(statistics.median(result["runs"]))
                starts[key].append(result["start_s"])
        with tempfile.TemporaryDirectory() as cold:  # no template database: the migrations run
            cold_start = side(HARNESS_SIDE, str(one), library_file, "1", env={"XDG_CACHE_HOME": cold})["start_s"]
    finally:
        one.unlink()
    t = time.perf_counter()
    library = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "scenarios"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    library_s = time.perf_counter() - t
    summary = library.stdout.strip().splitlines()[-1] if library.stdout.strip() else library.stderr[-500:]

    print(f"one-retry github_stars scenario: per-run median of {args.runs} runs in each of {args.repeats} fresh")
    print("processes per side, alternated; min / median / max over the processes, in ms:")
    for key, values in medians.items():
        print(f"  {key:22} {spread(values, 1000, 'ms')}")
    h = statistics.median(medians["harness"])
    for key in ("hand, default", "hand, heartbeat off"):
        print(f"  ratio to {key:13} {statistics.median(medians[key]) / h:8.1f}x  (medians of the medians)")
    print(f"  harness, API waits     {spread(api, 1000, 'ms')}  (of each harness run: blocked on Prefect's API)")
    print(f"  harness, whole call    {spread(whole, 1000, 'ms')}  (Session.run: the run's scope set and undone too)")
    off = statistics.median(medians["hand, heartbeat off"])
    print(f"  4x the heartbeat-off way would be {1000 * off / 4:.1f} ms a run, API waits included")
    print(f"  harness, on the wire   {spread(wire, 1000, 'ms')}  (HTTPS over loopback, the same session, side by side)")
    print(f"  wire / respx           {statistics.median(wire) / h:8.2f}x")
    print("session start, process start to first flow run possible, in s:")
    for key, values in starts.items():
        print(f"  {key:22} {spread(values, 1, 's')}")
    print(f"  harness, cold cache    {cold_start:8.1f} s  (no template database: migrations run)")
    wall, virtual, state = harness["slow"]
    print("three retries at retry_delay_seconds=600:")
    print(f"  {state}, virtual {virtual:.2f} s, wall {wall:.3f} s")
    print("whole scenario library through `harness run`, start included:")
    print(f"  {library_s:.1f} s wall; {summary}")


if __name__ == "__main__":
    main()
