"""The crash oracle's reference: plain Prefect runs killed by hand in processes of their own, then run again.

``python -m tests.fidelity.crash_reference OUT.json`` starts
``prefect_test_harness()`` and, for each case of ``crash_cases``, runs each
flow run of its history in a fresh process (``--run``) against that server,
in one working directory and one result storage: the first told to die at
the case's point (``crash_idioms.by_hand``), the others plain. Calls are
journaled as they are answered, hooks logged by the flow itself, so that a
killed process loses neither; states are read back from the API. It uses
none of the harness's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.fidelity import reference  # first: the reference's settings before Prefect reads any

SERIES = "crash-journal.jsonl"
CONCURRENT_CASES = 2  # the calls of a history, one line per call, in the case's folder


def run_one(spec: dict[str, Any], index: int, api_url: str, folder: Path) -> None:
    """One flow run of the history, in this process: the reference's respx router, the case's strategy by hand."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_TO_API_ENABLED,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        temporary_settings,
    )

    from tests.fidelity.crash_idioms import CRASH, HOW

    journal = folder / SERIES
    made = [json.loads(line)[0] for line in journal.read_text().splitlines()] if journal.exists() else []
    crash = spec.get("crash") if index == 0 else None
    after_call = (crash or {}).get("at", {}).get("after_call")

    class Journaled(reference.Router):
        """The reference's router, going on where the history's last run left each endpoint, each call
        journaled once answered (and, for ``after_call``, the process killed there by hand)."""

        def _serve(self, request: Any) -> Any:
            endpoint = next((e for e in self.endpoints if e.matches(request)), None)
            response = yield from super()._serve(request)
            if endpoint is not None:
                with open(journal, "a") as f:
                    f.write(json.dumps([endpoint.request]) + "\n")
                if crash is not None and after_call == endpoint.request and endpoint.calls == 1:
                    os.environ[CRASH] = "after_call:now"
                    reference_by_hand()
            return response

    router = Journaled(spec["endpoints"], api_url.rsplit("/api", 1)[0], spec.get("seed", 0))
    for endpoint in router.endpoints:  # the schedules go on from the history's last run
        for _ in range(made.count(endpoint.request)):
            endpoint.next_step()
    if crash is not None:
        ((point, where),) = crash["at"].items()
        os.environ[HOW] = crash.get("how", "kill")
        if point != "after_call":
            if isinstance(where, dict):  # the flow's code dies at its task's first run to get there
                raise ValueError(f"the crash reference takes a task's first run only, not {where}")
            os.environ[CRASH] = f"{point}:{where}"
    module_name, name = spec["flow"].split(":")
    module = importlib.import_module(module_name)
    os.chdir(folder / "work")
    import prefect

    with (
        prefect.tags(f"case-{spec_path_tag(folder)}"),  # the case's flow runs, told from the others' on the server
        temporary_settings(
            updates={
                PREFECT_API_URL: api_url,
                PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(folder / "results"),
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                PREFECT_LOGGING_TO_API_ENABLED: False,
            }
        ),
        router.mock,
        reference.with_strategy(module, getattr(module, name), spec.get("strategy"), router) as flow,
    ):
        called = flow(**spec["parameters"], return_state=True)
        state = asyncio.run(called) if inspect.isawaitable(called) else called
        result = state.result(raise_on_failure=False) if state.is_completed() else None
    (folder / f"run-{index}.json").write_text(json.dumps({"result": reference.jsonable(result)}))


def spec_path_tag(folder: Path) -> str:
    return folder.name


def _case_runs(client: Any, folder: Path) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    tag = f"case-{spec_path_tag(folder)}"
    return list(client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))))


def reference_by_hand() -> None:
    from tests.fidelity.crash_idioms import by_hand

    by_hand("after_call", "now")


def history(spec: dict[str, Any], api_url: str) -> dict[str, Any]:
    """Every flow run of the case's history, each in a fresh process; what the API and the journals say."""
    from prefect.client.orchestration import get_client

    from tests.fidelity.crash_idioms import HOOKS_LOG

    folder = Path(tempfile.mkdtemp(prefix="fidelity-crash-"))
    (folder / "work").mkdir()
    (folder / "results").mkdir()
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    runs = 1 + spec.get("reruns", 1 if "crash" in spec else 0)
    out: dict[str, Any] = {"runs": [], "reruns_tasks": [], "error": None}
    limits = spec.get("concurrency_limits", {}).get("tag", {})
    try:
        with get_client(sync_client=True) as client:
            for tag, slots in limits.items():
                client.create_concurrency_limit(tag=tag, concurrency_limit=slots)
        seen: set[Any] = set()
        for index in range(runs):
            if index and spec.get("rerun_after"):
                time.sleep(spec["rerun_after"])  # real time: the cache's expiry is the point
            child = subprocess.run(
                [sys.executable, "-m", "tests.fidelity.crash_reference", "--run", str(spec_path), str(index), api_url],
                env={k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
                capture_output=True,
                text=True,
                timeout=120,
            )
            crashed = index == 0 and "crash" in spec
            if child.returncode != 0 and not crashed:
                raise RuntimeError(f"run {index} exited {child.returncode}:\n{child.stderr[-3000:]}")
            with get_client(sync_client=True) as client:
                new = [fr for fr in _case_runs(client, folder) if fr.id not in seen]
                seen |= {fr.id for fr in new}
                if len(new) != 1:
                    raise RuntimeError(f"run {index} made {len(new)} flow runs:\n{child.stderr[-3000:]}")
                (flow_run,) = new
                state = client.read_flow_run(flow_run.id).state
            out["runs"].append({"flow": state.name, "flow_type": state.type.value})
            if not crashed:
                rows, _ = reference.settled_tasks(flow_run.id)
                out["reruns_tasks"].append(sorted([row[0], row[1], row[3]] for row in rows))
        last = folder / f"run-{runs - 1}.json"  # none when the one run made was killed
        out["result"] = json.loads(last.read_text())["result"] if last.exists() else None
        journal = folder / SERIES
        calls = [json.loads(line)[0] for line in journal.read_text().splitlines()] if journal.exists() else []
        out["calls"] = {e["request"]: calls.count(e["request"]) for e in spec["endpoints"]}
        hooks = folder / "work" / HOOKS_LOG
        ran = [json.loads(line) for line in hooks.read_text().splitlines()] if hooks.exists() else []
        kinds = [tuple(r[:3]) for r in ran]
        out["hooks"] = sorted([*key, kinds.count(key)] for key in set(kinds))
        module = importlib.import_module(spec["flow"].split(":")[0])
        out["sqlite"] = reference.stored_rows(module, spec["parameters"], str(folder / "work"))
        with get_client(sync_client=True) as client:  # the slots each limit holds once the history is over
            out["slots"] = {t: client.read_global_concurrency_limit_by_name(f"tag:{t}").active_slots for t in limits}
    except BaseException:  # noqa: BLE001 (a broken case is reported; the others still run)
        import traceback

        out["error"] = traceback.format_exc()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(Exception), get_client(sync_client=True) as client:
            for tag in limits:
                client.delete_concurrency_limit_by_tag(tag=tag)
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[1] == "--run":
        spec_path = Path(argv[2])
        run_one(json.loads(spec_path.read_text()), int(argv[3]), argv[4], spec_path.parent)
        return 0
    if len(argv) != 2:
        print("usage: python -m tests.fidelity.crash_reference OUT.json", file=sys.stderr)
        return 2
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from tests.fidelity.crash_cases import CRASH_CASES

    started = time.perf_counter()
    results: dict[str, Any] = {}
    with prefect_test_harness(server_startup_timeout=reference.STARTUP_TIMEOUT_S):
        api_url = PREFECT_API_URL.value()
        chosen = [c for c in CRASH_CASES if re.search(os.environ.get("FIDELITY_CRASH_CASES", ""), c["name"])]

        def one(spec: dict[str, Any]) -> None:
            t0 = time.perf_counter()
            results[spec["name"]] = history(spec, api_url)
            print(f"crash reference: {time.perf_counter() - t0:6.2f} s  {spec['name']}", file=sys.stderr)

        with ThreadPoolExecutor(CONCURRENT_CASES) as pool:  # each case's runs are processes of their own
            list(pool.map(one, chosen))
    Path(argv[1]).write_text(json.dumps(results, indent=1, sort_keys=True))
    print(f"crash reference: {len(results)} case(s), {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
