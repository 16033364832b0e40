"""The fidelity cases: plain data, shared by the harness side and the reference.

A case names a flow of ``tests.fidelity.idioms``, its parameters, and what each
endpoint answers, in the scenario language's subset: ``{"status": 500}``,
``{"json": {...}}`` (status 200), ``{"status": 404, "json": {...}}``,
``{"text": "..."}``, ``{"fault": "read_timeout"}``, each with an optional
``"times": N``; the last step repeats for ever. ``intended_difference`` says why
the two sides may differ, and the test asserts what still holds.
"""

from __future__ import annotations

from typing import Any

API = "https://api.example.test"
HOOKS = "https://hooks.example.test"
IDIOMS = "tests.fidelity.idioms"


def get(url: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"request": f"GET {url}", "responses": list(steps)}


def post(url: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"request": f"POST {url}", "responses": list(steps)}


def delete(url: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"request": f"DELETE {url}", "responses": list(steps)}


def case(name: str, flow: str, parameters: dict[str, Any], *endpoints: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "flow": f"{IDIOMS}:{flow}", "parameters": parameters, "endpoints": list(endpoints), **extra}


def item(i: int, *steps: dict[str, Any]) -> dict[str, Any]:
    return get(f"{API}/items/{i}", *(steps or ({"json": {"value": i * 10}},)))


def quote(symbol: str, price: float) -> dict[str, Any]:
    return get(f"{API}/quotes/{symbol}", {"json": {"price": price}})


OK = {"json": {"ok": True}}
ROWS = {"json": {"items": [{"id": 1}, {"id": 2}]}}

CASES: list[dict[str, Any]] = [
    # -- HTTP errors and transport faults
    case(
        "raise_for_status 500 without retries",
        "status_raises",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500, "text": "Internal Server Error"}),
    ),
    case(
        "404 with a JSON body fails the task",
        "status_raises",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 404, "json": {"message": "Not Found"}}),
    ),
    case(
        "read_timeout retried then OK",
        "transport_fault_retried",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"fault": "read_timeout"}, {"json": {"rows": 3}}),
    ),
    case(
        "connect_error exhausts the retries",
        "transport_fault_retried",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"fault": "connect_error"}),
    ),
    case(
        "connection_reset and remote_protocol_error then OK",
        "transport_fault_retried",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"fault": "connection_reset"}, {"fault": "remote_protocol_error"}, {"json": {"rows": 1}}),
    ),
    # -- caching
    case(
        "cache_key_fn=task_input_hash serves a repeated input from the cache",
        "cached_by_input_hash",
        {"symbols": ["ACME", "ACME", "INIT"]},
        quote("ACME", 12.5),
        quote("INIT", 3.0),
    ),
    case(
        "cache_policy=INPUTS serves a repeated input from the cache",
        "cached_by_inputs_policy",
        {"symbols": ["ACME", "ACME"]},
        quote("ACME", 12.5),
    ),
    case(
        "cache_expiration of an hour: the second call is a hit",
        "cached_with_expiration",
        {"symbol": "ACME"},
        quote("ACME", 12.5),
    ),
    case(
        "cache_expiration passes between the calls: two calls",
        "cache_expires_between_calls",
        {"symbol": "ACME"},
        quote("ACME", 12.5),
    ),
    case("refresh_cache=True calls again", "cache_refreshed", {"symbol": "ACME"}, quote("ACME", 12.5)),
    case("persist_result=True on task and flow", "persisted_results", {"url": f"{API}/rows"}, get(f"{API}/rows", ROWS)),
    # -- futures
    case(
        ".submit then .result() with one retry",
        "submit_then_result",
        {"ids": [1, 2, 3]},
        item(1),
        item(2, {"status": 500}, {"json": {"value": 20}}),
        item(3),
    ),
    case(
        "polling future.state until every run is final",
        "polls_future_state",
        {"ids": [1, 2]},
        item(1),
        item(2, {"status": 500}, {"json": {"value": 20}}),
    ),
    case(
        ".submit without waiting: the flow returns first",
        "submit_without_waiting",
        {"url": f"{HOOKS}/refreshed"},
        post(f"{HOOKS}/refreshed", {"status": 500}),
        intended_difference=(
            "a future the flow does not wait on races the flow's exit: ThreadPoolTaskRunner cancels it at exit "
            "after however many attempts ran; Prefect's outcome varies run to run, the harness pins it"
        ),
    ),
    case(
        ".submit without waiting on a healthy endpoint",
        "submit_without_waiting",
        {"url": f"{HOOKS}/refreshed"},
        post(f"{HOOKS}/refreshed", {"status": 202}),
        intended_difference=(
            "a future the flow does not wait on races the flow's exit: it may complete, or be cancelled before "
            "or between attempts; Prefect's outcome varies run to run, the harness pins it"
        ),
    ),
    case(
        ".map with one failing element fails the flow",
        "map_one_failing",
        {"ids": [1, 2, 3]},
        item(1),
        item(2, {"status": 404, "json": {"message": "Not Found"}}),
        item(3),
    ),
    case(
        ".map(...).result() with one failing element",
        "map_then_result",
        {"ids": [1, 2, 3]},
        item(1),
        item(2, {"status": 404}),
        item(3),
    ),
    case(
        "wait() then state names, one element failing",
        "wait_then_states",
        {"ids": [1, 2, 3]},
        item(1),
        item(2, {"status": 503}),
        item(3, {"fault": "read_timeout"}, {"json": {"value": 30}}),
    ),
    case(
        "as_completed sums mapped results",
        "sum_as_completed",
        {"ids": [1, 2, 3]},
        item(1),
        item(2),
        item(3, {"status": 502}, {"json": {"value": 30}}),
    ),
    case(".map with unmapped() headers", "map_with_unmapped", {"ids": [1, 2], "token": "t0k"}, item(1), item(2)),
    case(
        "ThreadPoolTaskRunner(max_workers=1) with .map",
        "map_on_one_worker",
        {"ids": [1, 2, 3]},
        item(1),
        item(2, {"status": 500, "times": 2}, {"json": {"value": 20}}),
        item(3),
    ),
    case(
        "wait_for an upstream that fails: downstream never runs",
        "upstream_failure_blocks_downstream",
        {"login_url": f"{API}/login", "data_url": f"{API}/data"},
        get(f"{API}/login", {"status": 401, "json": {"message": "bad credentials"}}),
        get(f"{API}/data", OK),
    ),
    case(
        "allow_failure lets the cleanup run",
        "allow_failure_runs_cleanup",
        {"data_url": f"{API}/data", "cleanup_url": f"{API}/tmp"},
        get(f"{API}/data", {"status": 500}),
        delete(f"{API}/tmp", {"status": 204}),
    ),
    # -- subflows and nested tasks
    case(
        "subflow with retries of its own recovers",
        "subflow_with_retries",
        {"url": f"{API}/inventory"},
        get(f"{API}/inventory", {"status": 500}, {"json": {"skus": 7}}),
    ),
    case(
        "subflow with retries exhausts them",
        "subflow_with_retries",
        {"url": f"{API}/inventory"},
        get(f"{API}/inventory", {"status": 500}),
    ),
    case(
        "failing nested subflow fails the parents",
        "nested_subflow_fails",
        {"url": f"{API}/inventory"},
        get(f"{API}/inventory", {"status": 404}),
    ),
    case(
        "subflow.with_options(retries=2) at the call site",
        "subflow_with_options_retries",
        {"url": f"{API}/inventory"},
        get(f"{API}/inventory", {"status": 500, "times": 2}, {"json": {"skus": 7}}),
    ),
    case(
        "a task calling a task",
        "task_calls_task",
        {"url": f"{API}/inventory"},
        get(f"{API}/inventory", {"status": 500}, {"json": {"skus": 7}}),
    ),
    # -- async
    case(
        "async flow gathers async tasks, one retried",
        "async_gather",
        {"ids": [1, 2, 3]},
        item(1),
        item(2, {"fault": "read_timeout"}, {"json": {"value": 20}}),
        item(3),
    ),
    case(
        "async flow gathers async tasks, one failing",
        "async_gather",
        {"ids": [1, 2]},
        item(1),
        item(2, {"status": 500}),
    ),
    case(
        "async flow retries re-run its async tasks",
        "async_flow_retries",
        {"ids": [1, 2]},
        item(1),
        item(2, {"fault": "connect_timeout"}, {"json": {"value": 20}}),
    ),
    case(
        "sync task in an async flow",
        "sync_task_in_async_flow",
        {"ids": [1, 2]},
        item(1, {"status": 503}, {"json": {"value": 10}}),
        item(2),
    ),
    # -- timeouts
    case(
        "sync task timeout_seconds on every attempt",
        "task_timeout_sync",
        {"url": f"{API}/job"},
        get(f"{API}/job", {"json": {"work_s": 0.8, "value": 1}}),
    ),
    case(
        "sync task times out, then a fast retry completes",
        "task_timeout_sync",
        {"url": f"{API}/job"},
        get(f"{API}/job", {"json": {"work_s": 0.8, "value": 1}}, {"json": {"work_s": 0, "value": 2}}),
    ),
    case(
        "async task timeout_seconds on every attempt",
        "task_timeout_async",
        {"url": f"{API}/job"},
        get(f"{API}/job", {"json": {"work_s": 0.8, "value": 1}}),
    ),
    case(
        "async task times out, then a fast retry completes",
        "task_timeout_async",
        {"url": f"{API}/job"},
        get(f"{API}/job", {"json": {"work_s": 0.8, "value": 1}}, {"json": {"work_s": 0, "value": 2}}),
    ),
    case(
        "submitted sync task timeout_seconds, off the main thread",
        "submitted_task_timeout",
        {"url": f"{API}/job"},
        get(f"{API}/job", {"json": {"work_s": 0.8, "value": 1}}, {"json": {"work_s": 0, "value": 2}}),
    ),
    case(
        "flow timeout_seconds in the flow's own work",
        "flow_timeout_in_body",
        {"url": f"{API}/job"},
        get(f"{API}/job", OK),
    ),
    case(
        "flow timeout_seconds while a task works", "flow_timeout_in_task", {"url": f"{API}/job"}, get(f"{API}/job", OK)
    ),
    case(
        "flow timeout_seconds expires during a task's retry delays",
        "flow_timeout_during_retry_delays",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}),
    ),
    case(
        "async flow timeout_seconds expires during a task's retry delays",
        "async_flow_timeout_during_retry_delays",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}),
    ),
    case(
        "gathered async tasks wait side by side past the flow timeout",
        "gathered_waits_past_the_flow_timeout",
        {"urls": [f"{API}/item/1", f"{API}/item/2"]},
        get(f"{API}/item/1", {"status": 500}, {"json": {"id": 1}}),
        get(f"{API}/item/2", {"status": 500}, {"json": {"id": 2}}),
    ),
    case(
        "mapped tasks wait side by side past the flow timeout",
        "mapped_waits_past_the_flow_timeout",
        {"urls": [f"{API}/item/1", f"{API}/item/2"]},
        get(f"{API}/item/1", {"status": 500}, {"json": {"id": 1}}),
        get(f"{API}/item/2", {"status": 500}, {"json": {"id": 2}}),
    ),
    case(
        "mapped tasks wait their retry delays side by side within the flow timeout",
        "mapped_retries_within_the_flow_timeout",
        {"urls": [f"{API}/item/1", f"{API}/item/2", f"{API}/item/3"]},
        get(f"{API}/item/1", {"status": 500}, {"json": {"id": 1}}),
        get(f"{API}/item/2", {"status": 500}, {"json": {"id": 2}}),
        get(f"{API}/item/3", {"status": 500}, {"json": {"id": 3}}),
    ),
    # -- retry options
    case(
        "retry_condition_fn does not retry a 404",
        "retry_condition",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 404}),
    ),
    case(
        "retry_condition_fn retries a 503 and a timeout",
        "retry_condition",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 503}, {"fault": "read_timeout"}, {"json": {"rows": 2}}),
    ),
    case(
        "retry_delay_seconds list shorter than retries",
        "delay_list_shorter_than_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500, "times": 3}, {"json": {"rows": 2}}),
    ),
    case(
        "retry_delay_seconds list longer than retries",
        "delay_list_longer_than_retries",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}),
    ),
    case(
        "retry_jitter_factor",
        "retry_with_jitter",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500, "times": 2}, {"json": {"rows": 2}}),
    ),
    case(
        "exponential_backoff retry delays",
        "retry_exponential_backoff",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 503, "times": 3}, {"json": {"rows": 2}}),
    ),
    case(
        "task.with_options(retries=2) at the call site",
        "with_options_at_call_site",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500, "times": 2}, {"json": {"rows": 2}}),
    ),
    case(
        "flow retries re-run the tasks",
        "flow_retries_rerun_tasks",
        {"config_url": f"{API}/config", "data_url": f"{API}/data"},
        get(f"{API}/config", {"json": {"region": "eu"}}),
        get(f"{API}/data", {"status": 500}, OK),
    ),
    case(
        "flow retries exhausted",
        "flow_retries_rerun_tasks",
        {"config_url": f"{API}/config", "data_url": f"{API}/data"},
        get(f"{API}/config", {"json": {"region": "eu"}}),
        get(f"{API}/data", {"status": 500}),
    ),
    case(
        "flow retries reuse a persisted task result",
        "flow_retries_with_persisted_task",
        {"config_url": f"{API}/config", "data_url": f"{API}/data"},
        get(f"{API}/config", {"json": {"region": "eu"}}),
        get(f"{API}/data", {"status": 500}, OK),
    ),
    case(
        "cache_expiration passes during a task's retry delay",
        "cache_expires_during_retry_delay",
        {"symbol": "ACME", "url": f"{API}/report"},
        quote("ACME", 12.5),
        get(f"{API}/report", {"status": 500}, {"json": {"rows": 2}}),
    ),
    case(
        "cache_expiration passes during the flow's retry delay",
        "cache_expires_during_flow_retry_delay",
        {"symbol": "ACME", "url": f"{API}/report"},
        quote("ACME", 12.5),
        get(f"{API}/report", {"status": 500}, {"json": {"rows": 2}}),
    ),
    # -- control flow in the flow
    case(
        "return_state=True falls back to the backup",
        "return_state_fallback",
        {"primary_url": f"{API}/primary", "backup_url": f"{API}/backup"},
        get(f"{API}/primary", {"status": 503}),
        get(f"{API}/backup", {"json": {"rows": 1}}),
    ),
    case(
        "try/except around a failing task",
        "except_and_fallback",
        {"primary_url": f"{API}/primary", "backup_url": f"{API}/backup"},
        get(f"{API}/primary", {"status": 500}),
        get(f"{API}/backup", {"json": {"rows": 1}}),
    ),
    case(
        "best-effort loop records None for a failed element",
        "best_effort_loop",
        {"ids": [1, 2]},
        item(1, {"status": 500}),
        item(2, {"fault": "read_timeout"}, {"json": {"value": 20}}),
    ),
    case(
        "flow returns a Failed state",
        "returns_failed_state",
        {"url": f"{API}/rows"},
        get(f"{API}/rows", {"json": {"items": []}}),
    ),
    case("log_prints=True", "prints_logged", {"url": f"{API}/rows"}, get(f"{API}/rows", ROWS)),
    # -- hooks
    case(
        "flow on_failure hook calls a webhook",
        "flow_hooks",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}),
        post(f"{HOOKS}/alert", {"status": 202}),
        post(f"{HOOKS}/done", {"status": 202}),
    ),
    case(
        "flow on_completion hook calls a webhook",
        "flow_hooks",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"json": {"rows": 1}}),
        post(f"{HOOKS}/alert", {"status": 202}),
        post(f"{HOOKS}/done", {"status": 202}),
    ),
    case(
        "task on_completion hook calls a webhook",
        "task_on_completion_hook",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"json": {"rows": 1}}),
        post(f"{HOOKS}/task-done", {"status": 202}),
    ),
    case(
        "hooks of every kind: on_running per attempt, none on a retried failure, two on_completion hooks",
        "hooks_of_every_kind",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}, {"json": {"rows": 1}}),
    ),
    case(
        "hooks of every kind on an async flow and task",
        "async_hooks_of_every_kind",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}, {"json": {"rows": 1}}),
    ),
    case(
        "hooks of every kind on a flow that fails",
        "hooks_of_every_kind",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 500}),
    ),
    case(
        "task on_failure hook after the retries",
        "task_on_failure_hook",
        {"url": f"{API}/report"},
        get(f"{API}/report", {"status": 502}),
        post(f"{HOOKS}/task-failed", {"status": 202}),
    ),
    # -- a shared client
    case(
        "shared httpx.Client with base_url, query as a subset",
        "shared_client_base_url",
        {"queries": ["prefect", "httpx"]},
        get(f"{API}/v1/search?q=prefect", {"status": 503}, {"json": {"total": 12}}),
        get(f"{API}/v1/search?q=httpx", {"json": {"total": 3}}),
    ),
    # -- async subflows
    case(
        "async subflows gathered, one task retried",
        "gathered_async_subflows",
        {"regions": ["eu", "us"]},
        get(f"{API}/regions/eu/sales", {"json": {"total": 120}}),
        get(f"{API}/regions/us/sales", {"status": 500}, {"json": {"total": 340}}),
    ),
    # -- transactions
    case(
        "transaction commits: on_commit hooks of both tasks",
        "staged_publish_in_transaction",
        {"source_url": f"{API}/records", "publish_url": f"{API}/publish"},
        get(f"{API}/records", ROWS),
        post(f"{API}/publish", {"json": {"published": 2}}),
    ),
    case(
        "transaction rolls back on a failed attempt though the retry succeeds",
        "staged_publish_in_transaction",
        {"source_url": f"{API}/records", "publish_url": f"{API}/publish"},
        get(f"{API}/records", ROWS),
        post(f"{API}/publish", {"status": 503}, {"json": {"published": 2}}),
    ),
    case(
        "transaction rolls back when the publish fails for good",
        "staged_publish_in_transaction",
        {"source_url": f"{API}/records", "publish_url": f"{API}/publish"},
        get(f"{API}/records", ROWS),
        post(f"{API}/publish", {"status": 409, "json": {"message": "batch already published"}}),
    ),
    # -- result storage
    case(
        "result_storage=LocalFileSystem in a temporary folder",
        "results_in_local_file_system",
        {"url": f"{API}/rows"},
        get(f"{API}/rows", {"status": 503}, ROWS),
    ),
    # -- global concurrency limits
    case(
        "sync concurrency() on a global limit that does not exist",
        "global_concurrency_sync",
        {"ids": [1, 2]},
        item(1),
        item(2, {"status": 500}, {"json": {"value": 20}}),
    ),
    case(
        "async concurrency() on a global limit that does not exist",
        "global_concurrency_async",
        {"ids": [1, 2]},
        item(1, {"fault": "read_timeout"}, {"json": {"value": 10}}),
        item(2),
    ),
    case(
        "strict concurrency() on a missing limit fails the flow",
        "strict_concurrency_missing_limit",
        {"url": f"{API}/report"},
        get(f"{API}/report", OK),
    ),
    # -- loggers and runtime
    case(
        "get_run_logger() in the flow and its tasks",
        "run_logger_in_flow_and_tasks",
        {"urls": [f"{API}/orders", f"{API}/refunds"]},
        get(f"{API}/orders", ROWS),
        get(f"{API}/refunds", {"fault": "connection_reset"}, {"json": {"items": [{"id": 9}]}}),
    ),
    case(
        "prefect.runtime run_count and names in a retried task",
        "runtime_names_and_attempts",
        {"dataset": "sales"},
        get(f"{API}/datasets/sales", {"status": 502, "times": 2}, {"json": {"rows": 4}}),
    ),
    # -- returned states and prefect.exceptions
    case(
        "flow returns Completed(message=...)",
        "returns_completed_with_message",
        {"url": f"{API}/rows"},
        get(f"{API}/rows", {"json": {"items": []}}),
    ),
    case(
        "task returns Failed(...) on each attempt",
        "task_returns_failed_state",
        {"url": f"{API}/users/7"},
        get(f"{API}/users/7", {"json": {"id": 7}}),
    ),
    case(
        "task raises FailedRun then succeeds",
        "raises_failed_run",
        {"url": f"{API}/exports/7"},
        get(
            f"{API}/exports/7",
            {"json": {"status": "failed", "id": 7}, "times": 2},
            {"json": {"status": "done", "rows": 5}},
        ),
    ),
    case(
        "task raises FailedRun on every attempt",
        "raises_failed_run",
        {"url": f"{API}/exports/7"},
        get(f"{API}/exports/7", {"json": {"status": "failed", "id": 7}}),
    ),
    # -- recorded hooks
    case(
        "flow and task hooks recorded in a module-level list",
        "hooks_recorded_per_partner",
        {"partners": ["acme", "globex"]},
        post(f"{API}/partners/acme/feed", {"json": {"accepted": 3}}),
        post(f"{API}/partners/globex/feed", {"status": 500}),
    ),
    case(
        "subflow calling sys.exit() runs its on_crashed hook",
        "subflow_crash_runs_on_crashed",
        {"partners": ["acme", "globex"]},
        get(f"{API}/partners/acme/status", {"json": {"maintenance": True}}),
        get(f"{API}/partners/globex/status", {"json": {"maintenance": False}}),
        post(f"{API}/partners/globex/feed", {"status": 503}, {"json": {"accepted": 5}}),
    ),
    # -- caching, retry options
    case(
        "cache_key_fn shares a key, refresh_cache=True rewrites it",
        "cache_key_fn_then_refresh",
        {"symbol": "ACME"},
        get(f"{API}/quotes/ACME", {"json": {"price": 12.5}}, {"json": {"price": 13.0}}),
    ),
    case(
        "async retry_condition_fn retries only 429",
        "async_retry_condition_on_429",
        {"urls": [f"{API}/search/a", f"{API}/search/b"]},
        get(
            f"{API}/search/a",
            {"status": 429, "headers": {"retry-after": "0"}, "times": 2},
            {"json": {"hits": 4}},
        ),
        get(f"{API}/search/b", {"status": 403, "json": {"message": "forbidden"}}),
    ),
    case(
        "exponential_backoff on mapped runs, one exhausted",
        "mapped_exponential_backoff",
        {"ids": [1, 2, 3]},
        item(1, {"status": 503, "times": 3}, {"json": {"value": 10}}),
        item(2, {"status": 500}),
        item(3),
    ),
    # -- mapping, dependencies, nesting, generators, annotations
    case(
        ".map with an unmapped list of fields",
        "map_over_ids_with_unmapped_list",
        {"user_ids": [1, 2], "fields": ["name", "email"]},
        get(f"{API}/users/1?fields=name,email", {"json": {"id": 1, "name": "Ada", "email": "ada@example.test"}}),
        get(
            f"{API}/users/2?fields=name,email",
            {"fault": "read_timeout"},
            {"json": {"id": 2, "name": "Lin", "email": "lin@example.test"}},
        ),
    ),
    case(
        "direct call with wait_for a submitted future",
        "direct_call_waits_for_submitted",
        {"create_url": f"{API}/exports", "download_url": f"{API}/exports/42/rows"},
        post(f"{API}/exports", {"status": 201, "json": {"export_id": 42}}),
        get(f"{API}/exports/42/rows", {"status": 404}, ROWS),
    ),
    case(
        "a task mapping another task",
        "task_maps_a_task",
        {"ids": [1, 2, 3]},
        item(1),
        item(2, {"status": 502}, {"json": {"value": 20}}),
        item(3),
    ),
    case(
        "generator task yields every page",
        "generator_task_pages",
        {"url": f"{API}/orders"},
        get(f"{API}/orders?page=1", {"json": {"items": [{"id": 1}, {"id": 2}], "next": 2}}),
        get(f"{API}/orders?page=2", {"json": {"items": [{"id": 3}], "next": None}}),
    ),
    case(
        "allow_failure(future) as an argument",
        "allow_failure_as_argument",
        {"primary_url": f"{API}/primary", "optional_url": f"{API}/optional"},
        get(f"{API}/primary", {"json": {"rows": 3}}),
        get(f"{API}/optional", {"status": 500}),
    ),
    case(
        "quote() around a large argument",
        "quoted_argument",
        {"url": f"{API}/ledger"},
        get(f"{API}/ledger", {"status": 500}, {"json": {"items": [{"amount": 5}, {"amount": 7}]}}),
    ),
    # -- gathered exceptions, pydantic parameters, variables, artifacts
    case(
        "asyncio.gather(return_exceptions=True) over async tasks",
        "gather_return_exceptions",
        {"ids": [1, 2, 3]},
        item(1),
        item(2, {"status": 500}),
        item(3, {"fault": "connect_error"}, {"json": {"value": 30}}),
    ),
    case(
        "pydantic model as a flow parameter",
        "pydantic_model_parameter",
        {"config": {"base_url": f"{API}/v2", "page_size": 2}, "pages": 2},
        get(f"{API}/v2/orders?page=1&per_page=2", {"json": {"items": [{"id": 1}, {"id": 2}]}}),
        get(f"{API}/v2/orders?page=2&per_page=2", {"status": 503}, {"json": {"items": [{"id": 3}]}}),
    ),
    case(
        "Variable.get with a default",
        "variable_with_default",
        {"url": f"{API}/partners"},
        get(f"{API}/partners?limit=25", {"status": 500}, ROWS),
    ),
    case(
        "create_markdown_artifact in a retried task",
        "markdown_artifact_in_task",
        {"url": f"{API}/rows"},
        get(f"{API}/rows", {"fault": "read_timeout"}, ROWS),
    ),
]
