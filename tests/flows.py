"""Flows the tests run through the harness, named by import path (``tests.flows:...``)."""

from __future__ import annotations

import threading
from os import replace as os_replace  # noqa: E402 (a target imported by name)
from pathlib import Path
from sqlite3 import connect as sqlite_connect  # noqa: E402
from typing import Any

import httpx
from prefect import flow, task
from prefect.tasks import task_input_hash

from tests.function_helpers import digest


@task(retries=1)
def ping(url: str) -> int:
    return httpx.get(url).status_code


@flow
def swallowing_flow(url: str) -> str:
    """Catches every exception, as careless flows do: the harness must still fail closed."""
    try:
        return str(ping(url))
    except Exception as exc:
        return f"caught {type(exc).__name__}"


@task(retries=1, retry_delay_seconds=0.2)
def ping_with_delay(url: str) -> int:
    response = httpx.get(url)
    response.raise_for_status()
    return response.status_code


@flow
def delayed_ping(url: str) -> int:
    return ping_with_delay(url)


@task
def write_file(name: str) -> str:
    with open(name, "w") as f:
        f.write("data")
    return name


@flow
def file_writer(name: str = "out.txt") -> str:
    """Writes a relative path: it must land in the scenario's own temporary directory."""
    return write_file(name)


@task
def fetch(url: str) -> int:
    return httpx.get(url).status_code


@flow
def mapped_fetch(urls: list[str]) -> list[int]:
    """Mapped task runs on the default thread-pool task runner: concurrent calls."""
    return fetch.map(urls).result()


@task(retries=1, timeout_seconds=0.2)
def slow_fetch(url: str) -> int:
    return httpx.get(url).status_code


@flow
def quick_deadline(url: str = "https://api.example.test/slow") -> int:
    """A 0.2 s task timeout: on the virtual clock as on the wall clock."""
    return slow_fetch(url)


@task
def stdlib_fetch(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return response.read().decode()


@flow
def urllib_flow(url: str = "http://weather.invalid/today") -> str:
    """Reaches the network with the standard library, past respx: the guard must refuse it."""
    try:
        return stdlib_fetch(url)
    except Exception as exc:
        return f"caught {type(exc).__name__}"


@task
def raw_socket(host: str, port: int) -> str:
    import socket

    with socket.create_connection((host, port), timeout=5):
        return "connected"


@flow
def socket_flow(host: str = "db.invalid", port: int = 5432) -> str:
    return raw_socket(host, port)


@task
def raw_ip_socket(port: int) -> str:
    import socket

    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))  # loopback, but not the harness's server
    finally:
        s.close()
    return "connected"


@flow
def loopback_socket_flow(port: int = 9) -> str:
    return raw_ip_socket(port)


@task
def sleep_forever(marker: str | None = None) -> None:
    import time
    from pathlib import Path

    if marker:
        Path(marker).write_text("hanging")  # tells a waiting test the scenario has started hanging
    time.sleep(3600)


@flow
def hanging_flow(marker: str | None = None) -> None:
    """Hangs in the user's own code, where the virtual clock does not reach."""
    sleep_forever(marker)


@task
def interrupted() -> None:
    raise KeyboardInterrupt


@flow
def interrupted_flow() -> None:
    interrupted()


@task
def requests_fetch(url: str) -> int:
    import requests

    return requests.get(url, timeout=5).status_code


@flow
def requests_flow(url: str = "https://api.invalid/v1/items") -> int:
    return requests_fetch(url)


@task
def where_am_i() -> str:
    import os

    with open("marker.txt", "w") as f:
        f.write("here")
    return os.getcwd()


@flow
def cwd_flow() -> str:
    """Returns the working directory the flow ran in, after leaving a file there."""
    return where_am_i()


@task
def fetch_status(url: str) -> int:
    response = httpx.get(url)
    response.raise_for_status()
    return response.status_code


@flow
def fetch_with_retries(url: str, retries: int = 0) -> int:
    """``fetch_status`` with ``retries`` chosen per run (``Task.with_options``), for property tests."""
    return fetch_status.with_options(retries=retries)(url)


@task
def fetch_or_hang(url: str) -> int:
    import time

    status = httpx.get(url).status_code
    if status == 503:
        time.sleep(3600)  # the flow's own bug: it waits for ever on a 503
    return status


@flow
def hangs_on_503(url: str = "https://api.example.test/maybe") -> int:
    return fetch_or_hang(url)


@task(retries=2, cache_key_fn=task_input_hash)
def cached_count(url: str) -> int:
    response = httpx.get(url)
    response.raise_for_status()
    return int(response.json()["count"])


@flow
def cached_flow(url: str = "https://api.example.test/count") -> int:
    """A task cached on its inputs: a second scenario must not be served from the first one's cache."""
    return cached_count(url)


@task(retries=3)
def submitted_stars(repo: str) -> int:
    return int(httpx.get(f"https://api.github.com/repos/{repo}").json()["stargazers_count"])


@flow
def fire_and_forget(repos: list[str]) -> str:
    """Submits a task per repository and returns without waiting on the futures (a defect Prefect only hints at)."""
    for repo in repos:
        submitted_stars.submit(repo)
    return "submitted"


@task
def slow_step(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@flow
def waits_on_a_slow_submitted_task(seconds: float = 0.9) -> float:
    """Waits on a submitted task that sleeps for real in its own thread."""
    return slow_step.submit(seconds).result()


@task
def flaky_fetch(url: str) -> int:
    response = httpx.get(url)
    response.raise_for_status()
    return response.status_code


@flow(retries=1, retry_delay_seconds=1)
def retried_subflow(url: str) -> int:
    return flaky_fetch(url)


@flow(retries=1, retry_delay_seconds=60)
def parent_of_a_retried_subflow(url: str = "https://api.example.test/sub") -> int:
    """The subflow retries once after its own 1 s; the parent's 60 s delay is never spent."""
    return retried_subflow(url)


@flow
def beside_another_server(url: str, other: str) -> list[int]:
    """Calls its endpoint while a thread, as a user's Prefect worker would, talks to another Prefect server."""
    import threading

    import requests

    seen: list[int] = []

    def worker() -> None:  # no context of the flow's: a background thread of the process
        seen.append(httpx.get(f"{other}/flows/x").status_code)
        seen.append(requests.get(f"{other}/events/in", timeout=5).status_code)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    return [ping(url), *seen]


USERS_WORKER: list[object] = []  # an events worker of the user's, started before a run (tests/test_neighbour.py)


@flow
def sees_the_users_worker() -> bool:
    """Whether the user's events worker is still Prefect's while the run goes on: it must have been drained."""
    from prefect.events.worker import EventsWorker

    return any(w is USERS_WORKER[0] for w in EventsWorker._instances.values())


@task(retries=2, retry_delay_seconds=10)
def fetch_n(url: str) -> int:
    response = httpx.get(url)
    response.raise_for_status()
    return int(response.json()["n"])


@flow
def retrying_fetch(url: str = "https://api.example.test/n") -> int:
    """One task with two retries 10 s apart: a crash at_time can land inside a retry delay."""
    return fetch_n(url)


@task
def fifo_read(path: str, marker: str) -> str:
    Path(marker).write_text("holding")  # tells a waiting test the run is about to be held
    with open(path) as fifo:  # blocks until a writer opens it: a run held still without sleeping
        return fifo.read()


@task
def after_the_fifo(text: str) -> str:
    return text


@flow
def held_by_a_fifo(path: str, marker: str) -> str:
    """Holds its run in ``fifo_read`` until someone writes to the FIFO at ``path`` (``marker`` written first)."""
    return after_the_fifo(fifo_read(path, marker))


@task
def double(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return 2 * x


@flow
def doubles(xs: list[int]) -> int:
    """``double`` on each x in turn; a failing run (a negative x) is caught and the flow goes on."""
    total = 0
    for x in xs:
        state = double(x, return_state=True)
        if state.is_completed():
            total += state.result()
    return total


@task
async def afetch(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(url, timeout=5.0)).json()["n"])


@flow
async def async_fetch(url: str = "https://api.example.test/n") -> int:
    """An async flow: Prefect's async API client sends its requests."""
    return await afetch(url)


def note_cancellation(flow: Any, flow_run: Any, state: Any) -> None:
    """An ``on_cancellation`` hook (counted by ``expect.hooks``)."""


@task
def step(n: int) -> int:
    return n


@flow(on_cancellation=[note_cancellation])
def three_steps() -> int:
    """Three task runs in a row, the flow with an ``on_cancellation`` hook."""
    return step(1) + step(2) + step(3)


@task
def peek() -> list[str]:
    import prefect._internal.version_checking as checking
    import prefect.client.base as client_base
    from websockets.asyncio.client import ClientConnection

    return [
        type(client_base.time).__name__,
        "wrapped" if "send" in vars(ClientConnection) else "plain",
        str(len(checking._API_VERSION_CHECK_CACHE)),
    ]


@flow
def peeks_at_patches() -> list[str]:
    """What a run sees of the harness's patches: the client's ``time``, the websocket's ``send``, the cache."""
    return peek()


# -- concurrency limits ----------------------------------------------------------------------------------

_AT_ONCE = {"now": 0, "most": 0}  # task runs inside a limited section at once, and the most there ever were


_AT_ONCE_LOCK = threading.Lock()


def _inside(section: Any) -> None:
    with _AT_ONCE_LOCK:
        _AT_ONCE["now"] += 1
        _AT_ONCE["most"] = max(_AT_ONCE["most"], _AT_ONCE["now"])
    try:
        section()
    finally:
        with _AT_ONCE_LOCK:
            _AT_ONCE["now"] -= 1


@task(tags=["db"])
def tagged_fetch(url: str) -> int:
    """A task run holding a slot of the tag limit ``db`` (if one is declared) while it calls ``url``."""
    out: list[int] = []
    _inside(lambda: out.append(httpx.get(url).json()["n"]))
    return out[0]


@flow
def tagged_side_by_side(url: str, n: int = 2) -> list[int]:
    """``n`` tagged task runs submitted at once; returns their results and the most that ran at once."""
    _AT_ONCE.update(now=0, most=0)
    results = [f.result() for f in [tagged_fetch.submit(url) for _ in range(n)]]
    return [*results, _AT_ONCE["most"]]


@task(tags=["db"], retries=2, retry_delay_seconds=100)
def tagged_retried_fetch(url: str) -> int:
    response = httpx.get(url)
    response.raise_for_status()
    return int(response.json()["n"])


@flow
def tagged_retries_side_by_side(url: str) -> list[int]:
    """Two tagged task runs that may retry, holding their slot through their retry waits."""
    return [f.result() for f in [tagged_retried_fetch.submit(url) for _ in range(2)]]


@task
def warehouse_load(url: str) -> int:
    """Takes a slot of the global limit ``warehouse`` in its own code, as Prefect's docs show."""
    from prefect.concurrency.sync import concurrency

    out: list[int] = []
    with concurrency("warehouse", occupy=1):
        _inside(lambda: out.append(httpx.get(url, timeout=60).json()["n"]))
    return out[0]


@flow
def warehouse_loads(url: str) -> list[int]:
    _AT_ONCE.update(now=0, most=0)
    results = [f.result() for f in [warehouse_load.submit(url) for _ in range(2)]]
    return [*results, _AT_ONCE["most"]]


@task(tags=["db"])
async def tagged_afetch(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(url)).json()["n"])


@flow
async def tagged_async_side_by_side(url: str) -> list[int]:
    import asyncio

    return list(await asyncio.gather(tagged_afetch(url), tagged_afetch(url)))


@flow
def tagged_sub(url: str) -> list[int]:
    return [f.result() for f in [tagged_fetch.submit(url) for _ in range(2)]]


@flow
def tagged_in_a_subflow(url: str) -> list[int]:
    """The tagged task runs under a subflow the flow calls (and is blocked in meanwhile)."""
    _AT_ONCE.update(now=0, most=0)
    return [*tagged_sub(url), _AT_ONCE["most"]]


@task
def impatient_for_the_warehouse(url: str) -> str:
    """Asks for a slot of ``warehouse`` after a first call, ready to wait 10 s for it at most."""
    from prefect.concurrency.sync import concurrency

    httpx.get(url)
    try:
        with concurrency("warehouse", occupy=1, timeout_seconds=10):
            return "acquired"
    except TimeoutError as exc:
        return type(exc).__name__


@flow
def warehouse_held_long(url: str, slow: str) -> list[Any]:
    """One task run holds ``warehouse`` for as long as ``slow`` takes; another will not wait that long."""
    held = warehouse_load.submit(slow)
    impatient = impatient_for_the_warehouse.submit(url)
    return [held.result(), impatient.result()]


@flow
def one_tagged_retried_fetch(url: str) -> int:
    return tagged_retried_fetch(url)


@flow(timeout_seconds=20)
def tagged_within_20_s(url: str) -> int:
    return tagged_fetch(url)


# -- functions: faults beyond HTTP ------------------------------------------------


def checksum(text: str) -> int:
    """A helper the flow imports by name: ``tests.flows:checksum`` is patched here and in its importer."""
    return sum(text.encode())


class Warehouse:
    def load(self, rows: int) -> int:
        return rows

    @staticmethod
    def ping() -> str:
        return "pong"


async def aload(rows: int) -> int:
    return rows


@task
def store_rows(db_path: str, rows: int, timeout: float = 5.0) -> int:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db_path, timeout=timeout)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
        conn.commit()
    return rows


@flow
def rows_stored(db_path: str = "rows.db", rows: int = 3, timeout: float = 5.0) -> int:
    return store_rows(db_path, rows, timeout)


@task
def write_report(path: str, text: str) -> int:
    tmp = Path(path + ".tmp")
    with open(tmp, "w") as out:
        out.write(text)
    Path(tmp).replace(path)
    return len(text)


@flow
def report_written(path: str = "report.txt", text: str = "0123456789") -> int:
    return write_report(path, text)


@task(persist_result=True)
def computed(n: int) -> int:
    return n * 2


@flow(persist_result=True)
def persisted_result(n: int = 21) -> int:
    """Prefect writes this task's and flow's results to files: those writes are never faulted."""
    return computed(n)


@task
def warehouse_calls(rows: int) -> list[Any]:
    import asyncio

    return [Warehouse().load(rows), Warehouse.ping(), asyncio.run(aload(rows)), checksum("ab"), digest("ab")]


@flow
def calls_helpers(rows: int = 2) -> list[Any]:
    return warehouse_calls(rows)


@task(timeout_seconds=1)
async def aslow_helper_call(rows: int) -> int:
    return await aload(rows)


@flow
async def timed_helper(rows: int = 1) -> int:
    return await aslow_helper_call(rows)


@task
async def astore_rows(db_path: str, rows: int) -> int:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
        conn.commit()
    return rows


@flow
async def arows_stored(db_path: str = "rows.db", rows: int = 3) -> int:
    return await astore_rows(db_path, rows)


@task
def store_then_fail(db_path: str) -> int:
    store_rows.fn(db_path, 1)
    raise ValueError("bad row")


@flow
def stores_then_fails(db_path: str = "rows.db") -> int:
    return store_then_fail(db_path)


_KEPT: dict[str, Any] = {}


@task
def kept_store() -> int:
    """Keeps its connection in a module global, from one flow run to the next, as some flows do."""
    import sqlite3

    conn = _KEPT.get("conn") or _KEPT.setdefault("conn", sqlite3.connect(":memory:", check_same_thread=False))
    conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    return 1


@flow
def kept_connection_store() -> int:
    return kept_store()


@task
def store_by_imported_names(db_path: str) -> int:
    with sqlite_connect(db_path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    Path("a.txt").write_text("a")
    os_replace("a.txt", "b.txt")
    return 1


@flow
def stored_by_imported_names(db_path: str = "rows.db") -> int:
    return store_by_imported_names(db_path)


@task
def fetch_item(n: int) -> int:
    return httpx.get(f"https://api.example.test/item/{n}").json()["v"]


@task
def keep(value: int) -> int:
    return value


def notify_cancelled(flow: Any, flow_run: Any, state: Any) -> None:
    """An ``on_cancellation`` hook that tells an API, and leaves a file in the working directory."""
    httpx.get("https://api.example.test/notify")
    Path("cancelled.txt").write_text(state.name)


@flow(on_cancellation=[notify_cancelled])
def fetch_and_keep(n: int = 1) -> int:
    """A fetch, then a step; on cancellation, a hook that calls the API (served flows: the runner runs it)."""
    return keep(fetch_item(n))


@task
def reach_out() -> str:
    import urllib.request

    try:
        urllib.request.urlopen("http://undeclared.example.org/", timeout=1)
    except OSError as exc:
        return type(exc).__name__
    return "reached"


@flow(on_cancellation=[note_cancellation])
def reaches_out_then_steps() -> int:
    """A task that tries an undeclared host (and swallows the refusal), then a step."""
    reach_out()
    return step(1)
