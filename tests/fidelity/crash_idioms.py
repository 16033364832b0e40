"""Flows for the crash oracle, in plain Prefect: each can die by its own hand at a point, as the reference asks.

Both sides run these flows. The harness kills its run at the scenario's
point from Prefect's engine; the reference sets ``FIDELITY_CRASH`` (and
``FIDELITY_CRASH_HOW``) in the process that runs the flow, and the flow's
own code kills that process at the same point: the first line of the task
(``before_task``), after its side effect (``after_return``), in its
``on_completion`` hook (``after_commit``: Prefect has committed and set the
state), or there once the server has the state (``after_task``). Without
the variable nothing happens. Every hook that runs is logged, line by line,
in ``hooks.jsonl`` of the working directory, which a killed process keeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
from contextlib import closing
from typing import Any

import httpx
from prefect import flow, task
from prefect.client.orchestration import get_client

API = "https://api.example.test"
CRASH, HOW = "FIDELITY_CRASH", "FIDELITY_CRASH_HOW"  # "after_return:store", "kill"
SIGNALS = {"kill": signal.SIGKILL, "terminate": signal.SIGTERM, "interrupt": signal.SIGINT}
HOOKS_LOG = "hooks.jsonl"


def by_hand(point: str, name: str) -> None:
    """Die here if the process was told to die at ``point`` of task ``name`` (once: its first run to get here)."""
    if os.environ.get(CRASH) != f"{point}:{name}":
        return
    del os.environ[CRASH]
    os.kill(os.getpid(), SIGNALS[os.environ.get(HOW, "kill")])
    if os.environ.get(HOW, "kill") == "kill":
        time.sleep(10)  # gone before this returns


def _log(owner: str, name: str, kind: str, run_id: Any) -> None:
    with open(HOOKS_LOG, "a") as f:
        f.write(json.dumps([owner, name, kind, str(run_id) if run_id is not None else None]) + "\n")
        f.flush()


def _flow_hook(kind: str) -> Any:
    def hook(flow: Any, flow_run: Any, state: Any) -> None:
        _log("flow", flow.name, kind, flow_run.id)

    hook.__name__ = f"log_{kind}"
    return hook


def task_completed(task: Any, task_run: Any, state: Any) -> None:
    """The task's ``on_completion`` hook: where ``after_commit`` and ``after_task`` die by hand (before it logs:
    the harness's point comes before Prefect calls any hook), else logged."""
    name = task.name
    if os.environ.get(CRASH) == f"after_task:{name}":
        with get_client(sync_client=True) as client:  # the server has the task run's final state
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):  # not created on the server yet
                    state = client.read_task_run(task_run.id).state
                    if state is not None and state.is_final():
                        break
                time.sleep(0.01)
        os.environ[CRASH] = f"after_commit:{name}"
    by_hand("after_commit", name)
    _log("task", task.name, "on_completion", None)


FLOW_HOOKS = {f"on_{k}": [_flow_hook(f"on_{k}")] for k in ("completion", "failure", "crashed")}


@task
def fetch(size: int) -> list[int]:
    by_hand("before_task", "fetch")
    ids = httpx.get(f"{API}/complaints", params={"size": size}).json()["ids"]
    by_hand("after_return", "fetch")
    return ids


@task(on_completion=[task_completed])
def store(ids: list[int], db: str = "rows.db") -> int:
    """Append a row per id: a second call stores them again."""
    by_hand("before_task", "store")
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS row (id INTEGER)")
        conn.executemany("INSERT INTO row VALUES (?)", [(i,) for i in ids])
        conn.commit()
    by_hand("after_return", "store")
    return len(ids)


@flow(**FLOW_HOOKS)
def etl(size: int = 2) -> int:
    return store(fetch(size))


@flow(**FLOW_HOOKS)
def etl_submitted(size: int = 2) -> int:
    """The store submitted: it runs in a worker thread, not on the process's main thread."""
    return store.submit(fetch(size)).result()


_HOLDING = {"now": 0, "most": 0}  # stores running at once in this process, and the most there ever were
_HOLDING_LOCK = threading.Lock()


@task
def store_apart(ids: list[int], db: str) -> int:
    """``store``, counting the stores running at once (a tag limit of 1 keeps them to one)."""
    with _HOLDING_LOCK:
        _HOLDING["now"] += 1
        _HOLDING["most"] = max(_HOLDING["most"], _HOLDING["now"])
    try:
        time.sleep(0.05)  # long enough for the other store's thread to start meanwhile, were it let in
        with closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS row (id INTEGER)")
            conn.executemany("INSERT INTO row VALUES (?)", [(i,) for i in ids])
            conn.commit()
        return len(ids)
    finally:
        with _HOLDING_LOCK:
            _HOLDING["now"] -= 1


@flow(**FLOW_HOOKS)
def etl_two_stores(size: int = 2) -> list[int]:
    """Two stores submitted side by side, each to a database of its own; returns [rows, most stores at once]."""
    _HOLDING.update(now=0, most=0)
    ids = fetch(size)
    first, second = store_apart.submit(ids[:1], "rows.db"), store_apart.submit(ids[1:], "rows_b.db")
    return [first.result() + second.result(), _HOLDING["most"]]


@task
async def afetch(size: int) -> list[int]:
    async with httpx.AsyncClient() as client:
        ids = (await client.get(f"{API}/complaints", params={"size": size})).json()["ids"]
    by_hand("after_return", "afetch")
    return ids


@task(on_completion=[task_completed])
async def astore(ids: list[int], db: str = "rows.db") -> int:
    by_hand("before_task", "astore")
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS row (id INTEGER)")
        conn.executemany("INSERT INTO row VALUES (?)", [(i,) for i in ids])
        conn.commit()
    by_hand("after_return", "astore")
    return len(ids)


@flow(**FLOW_HOOKS)
async def etl_async(size: int = 2) -> int:
    """The ETL as an async flow of async tasks."""
    return await astore(await afetch(size))


def harness_stored_rows(parameters: dict[str, Any]) -> tuple[str, str]:
    return "rows.db", "SELECT id FROM row ORDER BY rowid"
