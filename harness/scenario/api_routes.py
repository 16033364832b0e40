"""The routes of Prefect's API a scenario's ``prefect_api`` may name: ``METHOD /path``, ``*`` for one path segment.

Read from the OpenAPI document of the installed Prefect's server
(``tests/test_api_routes.py`` fails when it changes). The engine itself uses a
handful of them for a flow run; the README lists those, with what each does.
"""

from __future__ import annotations

import re

# The events stream, a websocket the OpenAPI document does not list: the flow's process sends its task runs'
# states there (``events:`` faults it).
EVENTS = "WS /events/in"
OPENAPI_ROUTES: tuple[str, ...] = (
    "GET /admin/settings",
    "DELETE /admin/storage",
    "GET /admin/storage",
    "PUT /admin/storage",
    "GET /admin/version",
    "POST /artifacts/",
    "DELETE /artifacts/*",
    "GET /artifacts/*",
    "PATCH /artifacts/*",
    "GET /artifacts/*/latest",
    "POST /artifacts/count",
    "POST /artifacts/filter",
    "POST /artifacts/latest/count",
    "POST /artifacts/latest/filter",
    "POST /automations/",
    "DELETE /automations/*",
    "GET /automations/*",
    "PATCH /automations/*",
    "PUT /automations/*",
    "POST /automations/count",
    "POST /automations/filter",
    "DELETE /automations/owned-by/*",
    "GET /automations/related-to/*",
    "POST /automations/templates/validate",
    "GET /block_capabilities/",
    "POST /block_documents/",
    "DELETE /block_documents/*",
    "GET /block_documents/*",
    "PATCH /block_documents/*",
    "POST /block_documents/count",
    "POST /block_documents/filter",
    "POST /block_schemas/",
    "DELETE /block_schemas/*",
    "GET /block_schemas/*",
    "GET /block_schemas/checksum/*",
    "POST /block_schemas/filter",
    "POST /block_types/",
    "DELETE /block_types/*",
    "GET /block_types/*",
    "PATCH /block_types/*",
    "POST /block_types/filter",
    "POST /block_types/install_system_block_types",
    "GET /block_types/slug/*",
    "GET /block_types/slug/*/block_documents",
    "GET /block_types/slug/*/block_documents/name/*",
    "GET /collections/views/*",
    "POST /concurrency_limits/",
    "DELETE /concurrency_limits/*",
    "GET /concurrency_limits/*",
    "POST /concurrency_limits/decrement",
    "POST /concurrency_limits/filter",
    "POST /concurrency_limits/increment",
    "DELETE /concurrency_limits/tag/*",
    "GET /concurrency_limits/tag/*",
    "POST /concurrency_limits/tag/*/reset",
    "GET /csrf-token",
    "POST /deployments/",
    "DELETE /deployments/*",
    "GET /deployments/*",
    "PATCH /deployments/*",
    "POST /deployments/*/create_flow_run",
    "POST /deployments/*/create_flow_run/bulk",
    "POST /deployments/*/pause_deployment",
    "POST /deployments/*/resume_deployment",
    "POST /deployments/*/schedule",
    "GET /deployments/*/schedules",
    "POST /deployments/*/schedules",
    "DELETE /deployments/*/schedules/*",
    "PATCH /deployments/*/schedules/*",
    "GET /deployments/*/work_queue_check",
    "POST /deployments/bulk_delete",
    "POST /deployments/count",
    "POST /deployments/filter",
    "POST /deployments/get_scheduled_flow_runs",
    "GET /deployments/name/*/*",
    "POST /deployments/paginate",
    "POST /events",
    "POST /events/count-by/*",
    "POST /events/filter",
    "GET /events/filter/next",
    "GET /flow_run_states/",
    "GET /flow_run_states/*",
    "POST /flow_runs/",
    "DELETE /flow_runs/*",
    "GET /flow_runs/*",
    "PATCH /flow_runs/*",
    "GET /flow_runs/*/graph",
    "GET /flow_runs/*/graph-v2",
    "POST /flow_runs/*/input",
    "DELETE /flow_runs/*/input/*",
    "GET /flow_runs/*/input/*",
    "POST /flow_runs/*/input/filter",
    "PATCH /flow_runs/*/labels",
    "GET /flow_runs/*/logs/download",
    "POST /flow_runs/*/resume",
    "POST /flow_runs/*/set_state",
    "POST /flow_runs/bulk_delete",
    "POST /flow_runs/bulk_set_state",
    "POST /flow_runs/count",
    "POST /flow_runs/filter",
    "POST /flow_runs/history",
    "POST /flow_runs/lateness",
    "POST /flow_runs/paginate",
    "POST /flows/",
    "DELETE /flows/*",
    "GET /flows/*",
    "PATCH /flows/*",
    "POST /flows/bulk_delete",
    "POST /flows/count",
    "POST /flows/filter",
    "GET /flows/name/*",
    "POST /flows/paginate",
    "GET /health",
    "GET /hello",
    "POST /logs/",
    "POST /logs/filter",
    "GET /observed-states",
    "GET /ready",
    "PUT /saved_searches/",
    "DELETE /saved_searches/*",
    "GET /saved_searches/*",
    "POST /saved_searches/filter",
    "GET /task_run_states/",
    "GET /task_run_states/*",
    "POST /task_runs/",
    "DELETE /task_runs/*",
    "GET /task_runs/*",
    "PATCH /task_runs/*",
    "POST /task_runs/*/set_state",
    "POST /task_runs/count",
    "POST /task_runs/filter",
    "POST /task_runs/history",
    "POST /task_runs/paginate",
    "POST /task_workers/filter",
    "POST /templates/validate",
    "POST /ui/flow_runs/count-task-runs",
    "POST /ui/flow_runs/history",
    "POST /ui/flows/count-deployments",
    "POST /ui/flows/next-runs",
    "POST /ui/schemas/validate",
    "GET /ui/task_runs/*",
    "POST /ui/task_runs/count",
    "POST /ui/task_runs/dashboard/counts",
    "POST /v2/concurrency_limits/",
    "DELETE /v2/concurrency_limits/*",
    "GET /v2/concurrency_limits/*",
    "PATCH /v2/concurrency_limits/*",
    "POST /v2/concurrency_limits/decrement",
    "POST /v2/concurrency_limits/decrement-with-lease",
    "POST /v2/concurrency_limits/filter",
    "POST /v2/concurrency_limits/increment",
    "POST /v2/concurrency_limits/increment-with-lease",
    "POST /v2/concurrency_limits/leases/*/renew",
    "POST /variables/",
    "DELETE /variables/*",
    "GET /variables/*",
    "PATCH /variables/*",
    "POST /variables/count",
    "POST /variables/filter",
    "DELETE /variables/name/*",
    "GET /variables/name/*",
    "PATCH /variables/name/*",
    "GET /version",
    "POST /work_pools/",
    "DELETE /work_pools/*",
    "GET /work_pools/*",
    "PATCH /work_pools/*",
    "POST /work_pools/*/concurrency_status",
    "POST /work_pools/*/get_scheduled_flow_runs",
    "POST /work_pools/*/queues",
    "DELETE /work_pools/*/queues/*",
    "GET /work_pools/*/queues/*",
    "PATCH /work_pools/*/queues/*",
    "POST /work_pools/*/queues/filter",
    "DELETE /work_pools/*/workers/*",
    "POST /work_pools/*/workers/filter",
    "POST /work_pools/*/workers/heartbeat",
    "POST /work_pools/count",
    "POST /work_pools/filter",
    "POST /work_queues/",
    "DELETE /work_queues/*",
    "GET /work_queues/*",
    "PATCH /work_queues/*",
    "POST /work_queues/*/concurrency_status",
    "POST /work_queues/*/get_runs",
    "GET /work_queues/*/status",
    "POST /work_queues/filter",
    "GET /work_queues/name/*",
)

ROUTES = (*OPENAPI_ROUTES, EVENTS)

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _index() -> dict[tuple[str, int], list[tuple[str, list[str]]]]:
    out: dict[tuple[str, int], list[tuple[str, list[str]]]] = {}
    for route in ROUTES:
        method, path = route.split(" ", 1)
        parts = path.split("/")
        out.setdefault((method, len(parts)), []).append((route, parts))
    return out


_INDEX = _index()


def route_of(method: str, path: str) -> str:
    """The route of a request to ``path`` (under ``/api``): ``POST /flow_runs/*/set_state``; for a path no route
    has (another Prefect's), the path with its ids starred."""
    parts = path.split("/")
    best: tuple[int, str] | None = None
    for route, pattern in _INDEX.get((method, len(parts)), []):
        if all(p in ("*", q) for p, q in zip(pattern, parts, strict=True)):
            literal = sum(p != "*" for p in pattern)
            if best is None or literal > best[0]:
                best = (literal, route)
    if best is not None:
        return best[1]
    return f"{method} " + "/".join("*" if _ID.fullmatch(p) else p for p in parts)
