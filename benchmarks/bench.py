"""Benchmark: the harness against the hand-written way of testing a Prefect flow.

In one run it measures, each side in a fresh subprocess so that both pay
their own start-up:

- session start: harness (template database, tuned settings) against
  ``prefect_test_harness()``;
- the same one-retry github_stars scenario N times through each, with the
  per-run medians and their ratio;
- a scenario with three retries 600 s apart (virtual time against wall time);
- the whole scenario library through ``harness run``, start included.

Usage: ``python benchmarks/bench.py [--runs N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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
"""

HARNESS_SIDE = """
import json, sys, time
t0 = time.perf_counter()
from harness import Session, load_file, check
session = Session()
session.start()
scenarios = {s.name: s for s in load_file(sys.argv[1]) + load_file(sys.argv[2])}
session._ensure_ready()
start_s = time.perf_counter() - t0
runs = []
for _ in range(int(sys.argv[3])):
    outcome = session.run(scenarios["one retry"])
    assert not check(scenarios["one retry"], outcome)
    runs.append(outcome.wall_s)
slow = session.run(scenarios["three ten-minute retry delays take half an hour of virtual time"])
session.close()
print(json.dumps({"start_s": start_s, "runs": runs, "slow": [slow.wall_s, slow.virtual_s, slow.flow.name]}))
"""

HAND_WRITTEN_SIDE = """
import json, sys, time
t0 = time.perf_counter()
import httpx, respx
from prefect.testing.utilities import prefect_test_harness
from harness.flows.github import github_stars
URL = "https://api.github.com/repos/PrefectHQ/prefect"
with prefect_test_harness():
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


def side(code: str, *args: str) -> dict:
    env = {"PREFECT_LOGGING_LEVEL": "CRITICAL", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, **env},
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"benchmark side failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    one = ROOT / "benchmarks" / "_one_retry.yaml"
    one.write_text(ONE_RETRY)
    try:
        harness = side(HARNESS_SIDE, str(one), str(ROOT / "scenarios" / "user_flows.yaml"), str(args.runs))
        hand = side(HAND_WRITTEN_SIDE, str(args.runs))
    finally:
        one.unlink()
    t = time.perf_counter()
    library = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "scenarios"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    library_s = time.perf_counter() - t
    summary = library.stdout.strip().splitlines()[-1] if library.stdout.strip() else library.stderr[-500:]

    h_med, w_med = statistics.median(harness["runs"]), statistics.median(hand["runs"])
    print(f"one-retry github_stars scenario, {args.runs} runs each, medians:")
    print(f"  harness        {h_med * 1000:8.1f} ms per run")
    print(f"  hand-written   {w_med * 1000:8.1f} ms per run (prefect_test_harness + respx, default settings)")
    print(f"  ratio          {w_med / h_med:8.1f}x faster")
    print("session start:")
    print(f"  harness        {harness['start_s']:8.2f} s  (process start to server ready, template database)")
    print(f"  hand-written   {hand['start_s']:8.2f} s  (process start to prefect_test_harness() ready)")
    wall, virtual, state = harness["slow"]
    print("three retries at retry_delay_seconds=600:")
    print(f"  {state}, virtual {virtual:.2f} s, wall {wall:.3f} s")
    print("whole scenario library through `harness run`, start included:")
    print(f"  {library_s:.1f} s wall; {summary}")


if __name__ == "__main__":
    main()
