"""Benchmark: what a crash costs, and ``harness crashes`` on the CFPB ETL.

Two figures, each against its baseline run side by side in the same process:

- a crash run (the flow's process killed after ``store_complaints`` returned,
  then the flow run again) against the same scenario run plainly, then twice
  (no crash, ``reruns: 1``): the extra cost of the crash is the crash run less
  the plain run of the same two flow runs; medians of ``--runs`` alternated
  runs, after one warm-up run of each;
- ``harness crashes scenarios/cfpb_etl.yaml`` in a fresh process, start
  included (the server's start, the run without a crash, every point).

Usage: ``python benchmarks/crash.py [--runs N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")  # before Prefect is imported: its logs are noise here
    from harness import Scenario, Session, load_file

    (crashing,) = [
        s
        for s in load_file(ROOT / "scenarios" / "cfpb_crash.yaml")
        if isinstance(s, Scenario) and s.name.startswith("cfpb etl killed after store_complaints returned")
    ]
    twice = crashing.model_copy(update={"crash": None, "reruns": 1, "strategies": {}})
    sides = {"crash, then a rerun": crashing, "two plain runs (reruns: 1)": twice}
    times: dict[str, list[float]] = {name: [] for name in sides}
    with Session() as session, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for scenario in sides.values():
            session.run(scenario)  # warm-up: the server's first answers, the crash template's imports
        for _ in range(args.runs):
            for name, scenario in sides.items():
                started = time.perf_counter()
                session.run(scenario)
                times[name].append(time.perf_counter() - started)
    print(f"the same two flow runs of the CFPB ETL, median of {args.runs} alternated runs each, in one session:")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        low, high = min(times[name]) * 1000, max(times[name]) * 1000
        print(f"  {name:28} {median * 1000:7.0f} ms  (min {low:.0f}, max {high:.0f})")
    extra = medians["crash, then a rerun"] - medians["two plain runs (reruns: 1)"]
    print(f"  a crash costs {extra * 1000:.0f} ms more than the run it replaces")
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from harness.cli import main; sys.exit(main())",
            "crashes",
            "scenarios/cfpb_etl.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    print("harness crashes scenarios/cfpb_etl.yaml, a fresh process, start included:")
    print(f"  {wall:.1f} s wall, exit {done.returncode}; {summary}")


if __name__ == "__main__":
    main()
