"""The function-fault oracle's reference: plain Prefect, the real call made to fail by hand.

``python -m tests.fidelity.function_reference OUT.json`` starts ``prefect_test_harness()`` and runs each case
of ``function_cases`` in a working directory of its own: a busy database is a second connection holding a
read transaction (a commit then waits out its busy timeout and raises SQLITE_BUSY), freed by the reference's
hook on the flow's retry condition after the case's number of failures; a full database is SQLite's own page
limit; a full disk is ``/dev/full``. States and run counts are read back from the API, rows from the
database. It uses none of the harness's code.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.fidelity import reference  # first: the reference's settings before Prefect reads any


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    import importlib
    import json

    from tests.fidelity import function_idioms

    folder = Path(tempfile.mkdtemp(prefix="fidelity-functions-"))
    os.chdir(folder)
    by_hand = spec["by_hand"]
    parameters = {**spec["parameters"], **by_hand.get("parameters", {})}
    reader = None
    out: dict[str, Any] = {"error": None}
    try:
        if "reader" in by_hand:  # another connection reads the database, holding its shared lock
            db = parameters.get("db_path", "rows.db")
            with closing(sqlite3.connect(db)) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
                conn.commit()
            reader = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            reader.execute("BEGIN")
            reader.execute("SELECT COUNT(*) FROM t").fetchall()
            failures, seen = by_hand["reader"]["failures"], [0]

            def free_after(exc: BaseException) -> None:
                seen[0] += 1
                if failures is not None and seen[0] == failures and reader is not None:
                    reader.execute("ROLLBACK")

            function_idioms.FAILED[:] = [free_after]
        module_name, name = spec["flow"].split(":")
        flow = getattr(importlib.import_module(module_name), name)
        state = flow(**parameters, return_state=True)
        reference.drain_events()
        tasks, _ = reference.settled_tasks(state.state_details.flow_run_id)
        out["flow"] = state.name
        out["tasks"] = sorted([t[0], t[1], t[3], t[5] or ""] for t in tasks)
        db = Path(parameters.get("db_path", "rows.db"))
        if db.exists() and db.stat().st_size:
            with closing(sqlite3.connect(db)) as conn:
                out["rows"] = conn.execute(function_idioms.COUNT).fetchone()[0]
        else:
            out["rows"] = None
        json.dumps(out)
    except Exception as exc:  # noqa: BLE001 (reported as the case's error)
        import traceback

        out["error"] = "".join(traceback.format_exception(exc))
    finally:
        function_idioms.FAILED.clear()
        if reader is not None:
            reader.close()
    return out


def main(argv: list[str]) -> int:
    import json

    if len(argv) != 2:
        print("usage: python -m tests.fidelity.function_reference OUT.json", file=sys.stderr)
        return 2
    from prefect.testing.utilities import prefect_test_harness

    from tests.fidelity.function_cases import FUNCTION_CASES

    started = time.perf_counter()
    results: dict[str, Any] = {}
    here = os.getcwd()
    with prefect_test_harness(server_startup_timeout=reference.STARTUP_TIMEOUT_S):
        for spec in FUNCTION_CASES:
            t0 = time.perf_counter()
            results[spec["name"]] = run_case(spec)
            os.chdir(here)
            print(f"function reference: {time.perf_counter() - t0:6.2f} s  {spec['name']}", file=sys.stderr)
    Path(argv[1]).write_text(json.dumps(results, indent=1, sort_keys=True))
    print(f"function reference: {len(results)} case(s), {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
