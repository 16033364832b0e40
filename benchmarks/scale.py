"""Benchmark: runs spread over worker processes, and a second session on a kept server.

Two measurements, each command in a fresh process, whole-process wall time:

- ``harness compare`` of ``benchmarks/compare_chaos.yaml`` (6 random scenarios)
  x 5 strategies x 4 seeds = 120 flow runs, with ``--workers 1`` and
  ``--workers 2``, alternated and repeated; also whether both wrote the same
  JSON report (wall-clock fields aside), as they must;
- ``harness run`` of one scenario twice with ``HARNESS_REUSE_SERVER=1``: the
  first starts the server and leaves it, the second reuses it. Each repeat
  uses a cache folder of its own (the template database copied in), and its
  kept server is stopped afterwards.

Usage: ``python benchmarks/scale.py [--repeats K] [--seeds N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HARNESS = str(Path(sys.executable).with_name("harness"))
STRATEGIES = "as_written,no_retries,transient,temporal,polly"

ONE = """
name: one retry
flow: github_stars
parameters: {repos: [PrefectHQ/prefect]}
endpoints:
  - request: GET https://api.github.com/repos/PrefectHQ/prefect
    responses: [{status: 500}, {json: {stargazers_count: 42}}]
expect:
  tasks: {get_stars: {state: Completed, retries: 1}}
"""


def timed(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> float:
    """Wall seconds of one command in a fresh process; exits when it fails."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HARNESS_"))}
    started = time.perf_counter()
    done = subprocess.run(
        [HARNESS, *args], cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"harness {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall


def without_wall(path: Path) -> Any:
    report = json.loads(path.read_text())
    return [{k: v for k, v in c.items() if k != "wall_s"} for c in report["cells"]]


def spread(values: list[float]) -> str:
    return f"{min(values):6.1f} {statistics.median(values):6.1f} {max(values):6.1f} s"


def kept_servers(cache: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"_serve.py") for a in args) and any(str(cache).encode() in a for a in args):
                pids.append(int(proc.name))
    return pids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per side, alternated (default 2)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per random scenario (default 4: 120 runs)")
    args = parser.parse_args()
    runs = 6 * len(STRATEGIES.split(",")) * args.seeds
    walls: dict[int, list[float]] = {1: [], 2: []}
    same = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for _ in range(args.repeats):
            for workers in (1, 2):
                report = out / f"w{workers}.json"
                walls[workers].append(
                    timed(
                        [
                            "compare",
                            "benchmarks/compare_chaos.yaml",
                            "--strategies",
                            STRATEGIES,
                            "--seeds",
                            str(args.seeds),
                            "--workers",
                            str(workers),
                            "--json",
                            str(report),
                        ]
                    )
                )
            same.append(without_wall(out / "w1.json") == without_wall(out / "w2.json"))

        first, second = [], []
        template = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prefect-fault-harness"
        (out / "s.yaml").write_text(ONE)
        for i in range(args.repeats):
            cache = out / f"cache{i}"
            (cache / "prefect-fault-harness").mkdir(parents=True)
            for db in template.glob("template-prefect-*.db"):
                shutil.copyfile(db, cache / "prefect-fault-harness" / db.name)
            env = {"HARNESS_REUSE_SERVER": "1", "XDG_CACHE_HOME": str(cache)}
            try:
                first.append(timed(["run", "s.yaml"], env, cwd=out))
                second.append(timed(["run", "s.yaml"], env, cwd=out))
            finally:
                for pid in kept_servers(cache):
                    os.kill(pid, signal.SIGTERM)

    cores = os.cpu_count()
    print(f"{cores} cores; each command in a fresh process, whole-process wall time, min / median / max:")
    print(f"harness compare, {runs} flow runs (compare_chaos.yaml, {STRATEGIES}, --seeds {args.seeds}):")
    for workers, values in walls.items():
        print(f"  --workers {workers}   {spread(values)}")
    ratio = statistics.median(walls[1]) / statistics.median(walls[2])
    print(f"  speed-up     {ratio:6.2f}x  (median --workers 1 / median --workers 2)")
    print(f"  same JSON report, wall-clock fields aside: {'yes' if all(same) else 'NO'}")
    print("harness run of one scenario with HARNESS_REUSE_SERVER=1:")
    print(f"  first        {spread(first)}  (starts the server and leaves it)")
    print(f"  second       {spread(second)}  (reuses it)")
    share = statistics.median(second) / statistics.median(first)
    print(f"  second/first {100 * share:5.0f}%")


if __name__ == "__main__":
    main()
