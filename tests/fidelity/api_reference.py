"""The API oracle's reference: plain Prefect runs behind a plain faulting proxy of the reference's own.

``python -m tests.fidelity.api_reference OUT.json`` starts
``prefect_test_harness()`` and, for each case of ``api_cases``, a proxy on
loopback (Starlette under uvicorn) between a fresh process running the case's
flow (``--run``, its ``PREFECT_API_URL`` the proxy's) and the server. The
proxy serves the case's steps by route: a status, ``lost_answer`` (sent on,
then no answer until the client gives up), ``pass``; on the events stream it
relays each frame to the server, or drops a task run's event. It counts the
requests of Prefect's API client per route (``prefect/`` user agent). The
server's view (the flow run, its task runs, flow runs left unfinished) is then
read from the server itself. It uses none of the harness's code.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from tests.fidelity import reference  # noqa: F401 (first: the reference's settings before Prefect reads any)

READ_TIMEOUT_S = 0.5  # the client's read timeout in a case with a lost answer: what the answer costs
SETTLE_S = 5.0
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SETTINGS = {
    "client_max_retries": "PREFECT_CLIENT_MAX_RETRIES",
    "client_retry_extra_codes": "PREFECT_CLIENT_RETRY_EXTRA_CODES",
    "client_retry_jitter_factor": "PREFECT_CLIENT_RETRY_JITTER_FACTOR",
}


def route_name(method: str, path: str) -> str:
    """``POST /flow_runs/*/set_state``: the path under ``/api``, ids starred."""
    return f"{method} " + "/".join("*" if ID.fullmatch(part) else part for part in path.split("/"))


class Steps:
    """One route's steps: in order, the last repeating."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.steps = [s for s in steps for _ in range(s.get("times", 1))]
        self.served = 0

    def next(self) -> dict[str, Any]:
        step = self.steps[min(self.served, len(self.steps) - 1)]
        self.served += 1
        return step


class Proxy:
    """The case's faulting proxy in front of the server, in a thread of its own."""

    def __init__(self, spec: dict[str, Any], server: str) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Route, WebSocketRoute

        self.server = server.rstrip("/")  # http://127.0.0.1:PORT/api
        self.routes = {r["request"]: Steps(r["responses"]) for r in spec.get("prefect_api", [])}
        self.events = Steps(spec["events"]) if spec.get("events") else None
        self.calls: dict[str, int] = {}
        self.created: list[str] = []
        app = Starlette(
            routes=[
                WebSocketRoute("/api/events/in", self.relay),
                Route("/{path:path}", self.http, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ]
        )
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/api"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)

    async def http(self, request: Any) -> Any:
        import httpx
        from starlette.responses import Response

        path = request.url.path.removeprefix("/api")
        name = route_name(request.method, path)
        body = await request.body()
        step: dict[str, Any] = {"pass": True}
        if request.headers.get("user-agent", "").startswith("prefect/"):
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.routes:
                step = self.routes[name].next()
        if "status" in step:
            return Response(status_code=step["status"], headers=step.get("headers", {}))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(trust_env=False) as client:
            sent = await client.request(
                request.method, self.server + path, params=request.query_params, content=body, headers=headers
            )
        if request.method == "POST" and path == "/flow_runs/" and sent.status_code in (200, 201):
            self.created.append(sent.json()["id"])
        if step.get("fault") == "lost_answer":
            await asyncio.sleep(READ_TIMEOUT_S * 3)  # applied; the client gives up before any answer
        kept = {k: v for k, v in sent.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return Response(content=sent.content, status_code=sent.status_code, headers=kept)

    async def relay(self, client: Any) -> None:
        """The events stream: each frame to the server, a task run's event dropped when its step says."""
        from websockets.asyncio.client import connect

        await client.accept(subprotocol="prefect")
        upstream_url = self.server.replace("http://", "ws://") + "/events/in"
        async with connect(upstream_url, subprotocols=["prefect"]) as upstream:  # type: ignore[list-item]

            async def down() -> None:
                async for message in upstream:
                    await client.send_text(message if isinstance(message, str) else message.decode())

            downward = asyncio.create_task(down())
            try:
                while True:
                    message = await client.receive_text()
                    if '"prefect.task-run.' in message and '"event"' in message:  # a task run's state
                        name = route_name("WS", "/events/in")
                        self.calls[name] = self.calls.get(name, 0) + 1
                        if self.events is not None and self.events.next().get("drop"):
                            continue
                    await upstream.send(message)
            except Exception:  # noqa: BLE001 (the client went away)
                pass
            finally:
                downward.cancel()


def run_one(spec_path: str, api_url: str, out_path: str) -> None:
    """In a fresh process: the case's flow, through the proxy at ``api_url``; its ending and hooks."""
    import asyncio as aio
    import importlib
    import inspect

    import prefect.settings
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_TO_API_ENABLED,
        temporary_settings,
    )

    from tests.fidelity import hook_log

    spec = json.loads(Path(spec_path).read_text())
    client = {  # the case's strategy: the client's own settings
        getattr(prefect.settings, SETTINGS[key]): set(value) if isinstance(value, list) else value
        for key, value in (spec.get("strategy") or {}).items()
    }
    module_name, name = spec["flow"].split(":")
    flow = getattr(importlib.import_module(module_name), name)
    out: dict[str, Any] = {"flow": None, "raised": None}
    lost = any(s.get("fault") == "lost_answer" for r in spec.get("prefect_api", []) for s in r["responses"])
    with temporary_settings(
        updates={
            PREFECT_API_URL: api_url,
            **({PREFECT_API_REQUEST_TIMEOUT: READ_TIMEOUT_S} if lost else {}),
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            PREFECT_LOGGING_TO_API_ENABLED: False,
            **client,
        }
    ):
        try:
            called = flow(return_state=True)
            state = aio.run(called) if inspect.isawaitable(called) else called
            out["flow"] = state.name
            if state.state_details.flow_run_id is not None:  # None in a state another client set (Cancelling)
                out["flow_run_id"] = str(state.state_details.flow_run_id)
        except Exception as exc:  # noqa: BLE001 (what the caller of the flow gets)
            out["raised"] = f"{type(exc).__name__}: {exc}"
    out["ran"] = [[owner, name, kind, str(run)] for owner, name, kind, run in hook_log.RAN]
    Path(out_path).write_text(json.dumps(out))


def server_view(server: str, created: list[str], flow_run_id: str | None) -> dict[str, Any]:
    """The flow run and its task runs as the server holds them once the events settle; unfinished flow runs."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    view: dict[str, Any] = {"server_flow": None, "server_tasks": {}, "orphans": 0}
    with SyncPrefectClient(server) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=created))) if created else []
        view["orphans"] = sum(1 for r in runs if r.state is None or r.state.type.value not in FINAL)
        if flow_run_id is None:
            heard = [r for r in runs if r.state is not None and r.state.type.value != "PENDING"]
            flow_run_id = str(heard[-1].id) if heard else None
        if flow_run_id is None:
            return view
        view["server_flow"] = client.read_flow_run(flow_run_id).state.name
        deadline, last, steady = time.monotonic() + SETTLE_S, None, 0
        while time.monotonic() < deadline:  # the task runs' states arrive as events: wait until they stay put
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            now = sorted((t.name.rsplit("-", 1)[0], t.state.name if t.state else None) for t in tasks)
            steady = steady + 1 if now == last else 0
            if steady >= 10:
                break
            last = now
            time.sleep(0.05)
        view["server_tasks"] = {name: state for name, state in (last or [])}
    return view


def case(spec: dict[str, Any], server: str, folder: Path) -> dict[str, Any]:
    """One case: its proxy, its flow in a fresh process, then the server's view."""
    from tests.fidelity.api_idioms import CANCEL_AFTER, SERVER

    spec_path, out_path = folder / "spec.json", folder / "out.json"
    spec_path.write_text(json.dumps(spec))
    proxy = None if spec.get("unreachable") else Proxy(spec, server)
    if proxy is None:  # nobody listens there
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/api"
    else:
        url = proxy.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env[SERVER] = server
    at = (spec.get("cancel") or {}).get("at", {}).get("after_return")
    if at is not None:
        env[CANCEL_AFTER] = str(at["run"])
    try:
        child = subprocess.run(
            [sys.executable, "-m", "tests.fidelity.api_reference", "--run", str(spec_path), url, str(out_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if child.returncode != 0 or not out_path.exists():
            return {"error": f"exit {child.returncode}:\n{child.stdout[-3000:]}\n{child.stderr[-3000:]}"}
        out = json.loads(out_path.read_text())
    finally:
        if proxy is not None:
            proxy.stop()
    created = proxy.created if proxy is not None else []
    flow_run_id = out.get("flow_run_id") or (created[-1] if created else None)
    from tests.fidelity.hook_log import counted

    return {
        "error": None,
        "flow": out["flow"] if out["raised"] is None else f"raised {normalized(out['raised'])}",
        "api": dict(sorted(proxy.calls.items())) if proxy is not None else {},
        "hooks": counted([tuple(r) for r in out["ran"]], flow_run_id),
        **server_view(server, created, out.get("flow_run_id")),
    }


def normalized(text: str) -> str:
    """An exception's text with its URLs' ports and its ids left out: what differs between two runs."""
    return ID.sub("ID", re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1", text))[:80]


def main(out: str) -> None:
    import tempfile

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from tests.fidelity.api_cases import API_CASES

    results: dict[str, Any] = {}
    with prefect_test_harness():
        server = str(PREFECT_API_URL.value())
        root = Path(tempfile.mkdtemp(prefix="fidelity-api-"))

        def one(spec: dict[str, Any]) -> None:
            folder = root / str(API_CASES.index(spec))
            folder.mkdir()
            try:
                results[spec["name"]] = case(spec, server, folder)
            except Exception:  # noqa: BLE001 (the case's failure is reported, the others go on)
                results[spec["name"]] = {"error": traceback.format_exc()}

        for spec in API_CASES:  # one at a time: two flows writing at once can find the server's SQLite
            one(spec)  # locked, and the server answers 503 (which the client retries): not the case's fault
    Path(out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if sys.argv[1] == "--run":
        run_one(*sys.argv[2:5])
    else:
        main(sys.argv[1])
