"""Record the oracle's references for the installed Prefect: ``python -m tests.fidelity.record [REFERENCE ...]``.

Runs each reference module (all of ``references.REFERENCES`` by default) live, side by side, and writes its
results to ``tests/fidelity/recorded/<module>.json`` with the Prefect version and the digest of the oracle's
sources they hold for. A reference with a case it could not run is not written. Run it after changing a case,
an idiom or a reference; ``pytest -m fidelity --reference=live`` checks that a recording still holds.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import prefect

from tests.fidelity.references import (
    REFERENCES,
    ROOT,
    kill,
    python,
    recording_path,
    sources_digest,
    spawn,
    tail,
)


def main(argv: list[str]) -> int:
    modules = argv or list(REFERENCES.values())
    unknown = sorted(set(modules) - set(REFERENCES.values()))
    if unknown:
        print(f"unknown reference(s) {', '.join(unknown)}; known: {', '.join(REFERENCES.values())}")
        return 2
    failed = 0
    with tempfile.TemporaryDirectory(prefix="fidelity-record-") as folder:
        started = time.perf_counter()
        runs = {module: spawn(module, Path(folder) / f"{module}.json") for module in modules}
        for module, process in runs.items():
            try:
                output, _ = process.communicate()
            except KeyboardInterrupt:  # each run is a session of its own: Ctrl-C does not reach it
                for run in runs.values():
                    kill(run)
                raise
            out = Path(folder) / f"{module}.json"
            if process.returncode != 0 or not out.exists():
                print(f"{module}: exited with code {process.returncode}, not recorded:\n{tail(output)}")
                failed += 1
                continue
            results = json.loads(out.read_text())
            errors = sorted(name for name, result in results.items() if result.get("error"))
            if errors:
                print(f"{module}: could not run {', '.join(map(repr, errors))}, not recorded")
                failed += 1
                continue
            path = recording_path(module)
            path.parent.mkdir(exist_ok=True)
            data = {
                "prefect": prefect.__version__,
                "python": python(),
                "sources": sources_digest(),
                "results": results,
            }
            path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            wall = time.perf_counter() - started
            print(f"{module}: {len(results)} case(s) recorded in {path.relative_to(ROOT)} ({wall:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
