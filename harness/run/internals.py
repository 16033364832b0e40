"""Every internal of Prefect (and of httpx, respx, aiohttp, CPython) the harness reads or replaces: one table.

Each entry names where the internal lives (``"module:attribute.path"``), how
the harness uses it, why, and what Prefect's code must say for the use to be
right (``written``: a function and a text its source must contain, where a
patch depends on how Prefect writes its code rather than on a name). An
internal that differs between Prefect minors has one entry per variant
(``prefect``: the versions it is for).

Replacements go through ``replace`` (one ``unittest.mock.patch.object`` on an
``ExitStack``, so undone in reverse order however the block ends), which
refuses a name the table does not list. ``tests/test_internals.py`` checks
every entry that applies to the installed Prefect, and fails naming it.

The module imports nothing but the standard library: the Prefect server
process (``_serve.py``, run by path) loads it on its own.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import os
import re
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from unittest import mock

# The Prefect minors the oracle and the scenario library pass on (README, "Supported Prefect"), and the
# patch release each was tested with. ``pyproject.toml`` allows the same range.
TESTED = {"3.7": "3.7.8", "3.8": "3.8.8", "3.9": "3.9.1"}
OLDEST, NEWEST = "3.7", "3.9"
SUPPORTED = f">={OLDEST},<3.{int(NEWEST.split('.')[1]) + 1}"
ALLOW_UNTESTED = "HARNESS_ALLOW_UNTESTED_PREFECT"

Use = Literal["replaced", "wrapped", "read"]


@dataclass(frozen=True)
class Internal:
    where: str  # "module:attribute.path"
    use: Use  # replaced (the harness's own in its place), wrapped (Prefect's, called inside), read
    why: str
    written: tuple[tuple[str, str], ...] = ()  # ("module:function", text its source contains)
    prefect: str = ""  # the Prefect minors this entry is for: "<3.8", ">=3.8"; "" for all
    by_source: bool = (
        False  # no attribute of a module or class (an instance's, an environment variable): ``written`` pins it
    )

    def applies(self, version: tuple[int, int]) -> bool:
        if not self.prefect:
            return True
        op, minor = re.fullmatch(r"(<|>=)3\.(\d+)", self.prefect).groups()  # type: ignore[union-attr]
        if version[0] != 3:  # another major (only ever run with HARNESS_ALLOW_UNTESTED_PREFECT): the newest variant
            return op == ">="
        return version[1] < int(minor) if op == "<" else version[1] >= int(minor)


class InternalMissing(RuntimeError):
    """A Prefect internal the harness depends on is not where the table says (another Prefect)."""


def _e(
    where: str, use: Use, why: str, *written: tuple[str, str], prefect: str = "", by_source: bool = False
) -> Internal:
    return Internal(where, use, why, written, prefect, by_source)


TE, FE, TR, FU = "prefect.task_engine", "prefect.flow_engine", "prefect.task_runners", "prefect.futures"
CB = "prefect.client.base"
INTERNALS: tuple[Internal, ...] = (
    # -- The task engine: waits, state reports, jitter, "now" (hooks.hooked, hooks.virtual_now).
    _e(
        f"{TE}:time",
        "replaced",
        "task retry waits sleep on the virtual clock",
        (f"{TE}:SyncTaskRunEngine.wait_until_ready", "time.sleep("),
    ),
    _e(
        f"{TE}:anyio",
        "replaced",
        "async task retry waits sleep on the virtual clock",
        (f"{TE}:AsyncTaskRunEngine.wait_until_ready", "anyio.sleep("),
    ),
    _e(
        f"{TE}:emit_task_run_state_change_event",
        "wrapped",
        "every task run state is recorded in-process",
        (f"{TE}:SyncTaskRunEngine.set_state", "emit_task_run_state_change_event("),
        (f"{TE}:AsyncTaskRunEngine.set_state", "emit_task_run_state_change_event("),
    ),
    _e(
        f"{TE}:clamped_poisson_interval",
        "replaced",
        "retry jitter draws from the scenario's seeded generator",
        (f"{TE}:SyncTaskRunEngine.handle_retry", "clamped_poisson_interval("),
        (f"{TE}:AsyncTaskRunEngine.handle_retry", "clamped_poisson_interval("),
        prefect=">=3.8",
    ),
    _e(
        f"{TE}:clamped_poisson_interval",
        "replaced",
        "drawn only while a task run waits to enter Running: from a seeded generator (Prefect before 3.8 "
        "applies no retry jitter, and the harness reports none)",
        (f"{TE}:SyncTaskRunEngine.begin_run", "clamped_poisson_interval("),
        prefect="<3.8",
    ),
    _e(
        "prefect._internal.version_checking:_API_VERSION_CHECK_CACHE",
        "replaced",
        "emptied for a run that answers Prefect's API: its first request is the version check, as in a fresh process",
        ("prefect._internal.version_checking:_is_api_version_check_cached", "_API_VERSION_CHECK_CACHE"),
    ),
    _e(
        "prefect.events.related:RESOURCE_CACHE",
        "replaced",
        "emptied for a run that answers Prefect's API: the flow and flow run its events name are read once per "
        "process, as in a fresh one",
        ("prefect.events.related:related_resources_from_run_context", "cache=RESOURCE_CACHE"),
    ),
    _e(
        "websockets.asyncio.client:ClientConnection.send",
        "wrapped",
        "the events stream's faults (drop, disconnect) act on each event frame the events client sends",
        ("prefect.events.clients:PrefectEventsClient._emit", "await self._websocket.send(event.model_dump_json())"),
    ),
    # -- Prefect's API client: its own retries wait on the virtual clock, with seeded jitter (hooks.hooked).
    _e(
        f"{CB}:time",
        "replaced",
        "the sync client's waits between its retries sleep on the virtual clock",
        (f"{CB}:PrefectHttpxSyncClient._send_with_retry", "time.sleep(retry_seconds)"),
    ),
    _e(
        f"{CB}:anyio",
        "replaced",
        "the async client's waits between its retries, the same",
        (f"{CB}:PrefectHttpxAsyncClient._send_with_retry", "await anyio.sleep(retry_seconds)"),
    ),
    _e(
        f"{CB}:clamped_poisson_interval",
        "replaced",
        "the client's backoff jitter draws from the scenario's seeded generator",
        (f"{CB}:PrefectHttpxSyncClient._send_with_retry", "clamped_poisson_interval("),
        (f"{CB}:PrefectHttpxAsyncClient._send_with_retry", "clamped_poisson_interval("),
    ),
    _e(
        f"{CB}:bounded_poisson_interval",
        "replaced",
        "the jitter above a Retry-After wait, the same",
        (f"{CB}:PrefectHttpxSyncClient._send_with_retry", "bounded_poisson_interval("),
        (f"{CB}:PrefectHttpxAsyncClient._send_with_retry", "bounded_poisson_interval("),
    ),
    _e(
        "prefect._internal.compatibility.async_dispatch:async_dispatch",
        "read",
        "`state.result(_sync=True)`: the `transient` retry condition reads a failed async task's exception "
        "synchronously (policies.conditions.raised)",
        ("prefect._internal.compatibility.async_dispatch:async_dispatch", '_sync = kwargs.pop("_sync", None)'),
    ),
    _e(
        "prefect.utilities.math:bounded_poisson_interval",
        "read",
        "rebuilt from its code with the module's `random` bound to the seeded generator",
        ("prefect.utilities.math:bounded_poisson_interval", "poisson_interval("),
    ),
    _e(
        "prefect.utilities.math:poisson_interval",
        "read",
        "rebuilt from its code with the module's `random` bound to the seeded generator",
        ("prefect.utilities.math:poisson_interval", "random.uniform("),
    ),
    _e(
        "prefect.utilities.math:clamped_poisson_interval",
        "read",
        "rebuilt the same way, calling the rebuilt one",
        ("prefect.utilities.math:clamped_poisson_interval", "poisson_interval("),
    ),
    _e(
        f"{TE}:prefect",
        "replaced",
        "a view of `prefect` whose `types._datetime.now` reads virtual time: retry schedules and the wait until them",
        (f"{TE}:SyncTaskRunEngine.handle_retry", "prefect.types._datetime.now("),
    ),
    _e(
        "prefect.results:prefect",
        "replaced",
        "the same view: task cache expiry sees the skipped waits",
        ("prefect.results:ResultStore._exists", "prefect.types._datetime.now("),
    ),
    _e("prefect.types._datetime:now", "read", "the real `now`, which the view adds the skipped seconds to"),
    _e(f"{TE}:SyncTaskRunEngine.start", "wrapped", "each task run waits on a clock line of its own"),
    _e(f"{TE}:AsyncTaskRunEngine.start", "wrapped", "the same, for async task runs"),
    _e(
        f"{TE}:get_hook_name",
        "wrapped",
        "each task hook Prefect is about to call, counted (expect.hooks)",
        (f"{TE}:SyncTaskRunEngine.call_hooks", "hook_name = get_hook_name(hook)"),
        (f"{TE}:AsyncTaskRunEngine.call_hooks", "hook_name = get_hook_name(hook)"),
    ),
    _e(f"{TE}:SyncTaskRunEngine.call_hooks", "wrapped", "which task run and state the hooks it calls are for"),
    _e(f"{TE}:AsyncTaskRunEngine.call_hooks", "wrapped", "the same, for async task runs"),
    _e(
        f"{FE}:get_hook_name",
        "wrapped",
        "each flow hook Prefect is about to call, counted (expect.hooks)",
        (f"{FE}:FlowRunEngine.call_hooks", "hook_name = get_hook_name(hook)"),
        (f"{FE}:AsyncFlowRunEngine.call_hooks", "hook_name = get_hook_name(hook)"),
    ),
    _e(f"{FE}:FlowRunEngine.call_hooks", "wrapped", "which flow run and state the hooks it calls are for"),
    _e(f"{FE}:AsyncFlowRunEngine.call_hooks", "wrapped", "the same, for async flows"),
    # -- Crash points, in the crashing run's process only (crash.Trigger).
    _e(
        f"{TE}:SyncTaskRunEngine.begin_run",
        "wrapped",
        "before_task: the process dies as the task run's first attempt is about to start",
        (f"{TE}:SyncTaskRunEngine.start", "self.begin_run()"),
    ),
    _e(
        f"{TE}:AsyncTaskRunEngine.begin_run",
        "wrapped",
        "the same, for async task runs",
        (f"{TE}:AsyncTaskRunEngine.start", "await self.begin_run()"),
    ),
    _e(
        f"{TE}:SyncTaskRunEngine.handle_success",
        "wrapped",
        "after_return: the task function has returned, Prefect has handled nothing of it",
        (f"{TE}:SyncTaskRunEngine.call_task_fn", "self.handle_success(result, transaction=transaction)"),
    ),
    _e(
        f"{TE}:AsyncTaskRunEngine.handle_success",
        "wrapped",
        "the same, for async task runs",
        (f"{TE}:AsyncTaskRunEngine.call_task_fn", "await self.handle_success(result, transaction=transaction)"),
    ),
    _e(
        f"{TE}:SyncTaskRunEngine.transaction_context",
        "wrapped",
        "after_commit and after_task: the task run's transaction has committed, its state set",
        (f"{TE}:run_task_sync", "engine.transaction_context() as txn"),
    ),
    _e(
        f"{TE}:AsyncTaskRunEngine.transaction_context",
        "wrapped",
        "the same, for async task runs",
        (f"{TE}:run_task_async", "engine.transaction_context() as txn"),
    ),
    _e(f"{TE}:TaskRunTimeoutError", "read", "a task's timeout on the virtual clock raises what Prefect's would"),
    # -- The flow engine: states, retries, timeouts, the flow function's return (hooks).
    _e(
        f"{FE}:propose_state_sync",
        "wrapped",
        "every flow run state is recorded in-process",
        (f"{FE}:FlowRunEngine.set_state", "propose_state_sync("),
    ),
    _e(
        f"{FE}:propose_state",
        "wrapped",
        "the same, for async flows",
        (f"{FE}:AsyncFlowRunEngine.set_state", "propose_state("),
        ("prefect.utilities.engine:propose_state", "async def propose_state("),
    ),
    _e(
        f"{FE}:run_flow",
        "wrapped",
        "a flow run's retry delay is waited on the virtual clock, on a line of its own",
        ("prefect.flows:Flow.__call__", "from prefect.flow_engine import run_flow"),
    ),
    _e(
        f"{FE}:call_with_parameters",
        "wrapped",
        "the flow function's return, for the exit gate",
        (f"{FE}:FlowRunEngine.call_flow_fn", "call_with_parameters(self.flow.fn"),
    ),
    _e(
        f"{FE}:timeout",
        "wrapped",
        "marks the cancel scope opened next as the flow run's timeout",
        (f"{FE}:FlowRunEngine.run_context", "timeout_context = timeout_async if self.flow.isasync else timeout"),
        ("prefect.utilities.timeout:timeout", "cancel_sync_after("),
    ),
    _e(
        f"{FE}:timeout_async",
        "wrapped",
        "the same, for async flows",
        ("prefect.utilities.timeout:timeout_async", "cancel_async_after("),
    ),
    _e(
        "prefect.utilities.timeout:cancel_sync_after",
        "wrapped",
        "a flow's timeout_seconds also set on the virtual clock, fired through Prefect's own scope.cancel()",
    ),
    _e("prefect.utilities.timeout:cancel_async_after", "wrapped", "the same, for async flows"),
    # -- Futures and the thread pool: submitted task runs, their waiters, the flow's exit (futures.pinned_exit).
    _e(
        f"{TR}:ThreadPoolTaskRunner.submit",
        "wrapped",
        "a submitted task run gets a clock line and joins the exit gate",
        (f"{TR}:ThreadPoolTaskRunner.submit", "self._cancel_events[task_run_id] = cancel_event"),
    ),
    _e(
        f"{TR}:ThreadPoolTaskRunner.__exit__",
        "wrapped",
        "Prefect's cancellation of unfinished task runs waits until nothing submitted can progress before it",
        (f"{TR}:ThreadPoolTaskRunner.__exit__", "self.cancel_all()"),
    ),
    _e(
        f"{TR}:ThreadPoolTaskRunner._cancel_events",
        "read",
        "a task run's cancel event, which a held run waits on",
        (f"{TR}:ThreadPoolTaskRunner.__init__", "self._cancel_events"),
        by_source=True,
    ),
    _e(f"{FU}:PrefectConcurrentFuture.wait", "wrapped", "the waiter waits on the task run's line"),
    _e(f"{FU}:PrefectConcurrentFuture.result", "wrapped", "the same"),
    _e(
        f"{FU}:PrefectConcurrentFuture._add_prefect_done_callback",
        "wrapped",
        "as_completed and wait(timeout=) wait on the futures they register on",
        (f"{FU}:_register_prefect_done_callback", '"_add_prefect_done_callback"'),
        (f"{FU}:as_completed", "_register_prefect_done_callback("),
    ),
    _e(f"{FU}:PrefectConcurrentFuture.state", "replaced", "polling future.state is a wait on the task run"),
    _e(f"{FU}:PrefectConcurrentFuture.wrapped_future", "read", "whether the task run has finished"),
    _e(
        f"{FU}:threading",
        "replaced",
        "as_completed's and wait()'s events mark their caller blocked",
        (f"{FU}:as_completed", "threading.Event("),
        (f"{FU}:wait", "threading.Event("),
    ),
    # -- Prefect's client, settings, workers and results (scope: RunScope, own_results, SharedSsl).
    _e(
        "prefect.client.orchestration:ssl",
        "replaced",
        "one SSL context per session instead of one per client",
        ("prefect.client.orchestration:SyncPrefectClient.__init__", "ssl.create_default_context("),
    ),
    _e(
        "prefect.context:GLOBAL_SETTINGS_CONTEXT",
        "replaced",
        "the session's settings for threads with no settings context of their own, as prefect_test_harness sets them",
        ("prefect.context:SettingsContext.get", "GLOBAL_SETTINGS_CONTEXT"),
    ),
    _e("prefect.context:root_settings_context", "read", "the settings a fresh process would read, built once"),
    _e(
        "prefect.context:refresh_global_settings_context",
        "read",
        "a forked server reads its own environment's settings",
    ),
    _e(
        "prefect.events.worker:EventsWorker._instances",
        "read",
        "the registry of queue services (events, API logs): the user's drained, the session's set aside",
    ),
    _e("prefect.events.worker:EventsWorker._instance_lock", "read", "held while the registry is read or changed"),
    _e("prefect.events.worker:EventsWorker._instance_cache_lock", "read", "held after _instance_lock", prefect=">=3.8"),
    _e(
        "prefect.events.worker:EventsWorker._drain",
        "read",
        "sends what a worker holds, then stops it",
        ("prefect.events.worker:EventsWorker._drain", "self._stop(at_exit=at_exit)"),
    ),
    _e(
        "prefect.events.worker:EventsWorker._client",
        "read",
        "which server a worker sends to (its client's _api_url)",
        ("prefect.events.worker:EventsWorker._lifespan", "self._client = self.client_type("),
        ("prefect.events.clients:PrefectEventsClient.__init__", "self._api_url = api_url"),
        by_source=True,
    ),
    _e(
        "prefect.server.api.server:SubprocessASGIServer._instances",
        "read",
        "the user's own test servers, whose traffic is never a call of the scenario",
    ),
    _e("prefect.results:_default_storages", "read", "a run's result storage is forgotten after it"),
    _e(
        "prefect._internal.concurrency.cancellation:CancelledError",
        "read",
        "a call cut by Prefect's cancellation ends its virtual wait",
    ),
    _e(
        "prefect.server.database.configurations:AioSqliteConfiguration.begin_transaction",
        "wrapped",
        "the server's SQLite transactions begin IMMEDIATE: no 503 'database is locked' stalls (server process only)",
        (
            "prefect.server.database.configurations:AioSqliteConfiguration.begin_transaction",
            '"IMMEDIATE" if with_for_update else "DEFERRED"',
        ),
    ),
    _e(
        "prefect.server.concurrency.lease_storage.memory:datetime",
        "replaced",
        "leases are taken, renewed, lapse and are freed on the lease clock (server process only, _lease_clock)",
        (
            "prefect.server.concurrency.lease_storage.memory:ConcurrencyLeaseStorage.create_lease",
            "datetime.now(timezone.utc)",
        ),
    ),
    _e(
        "prefect.server.concurrency.lease_storage.filesystem:datetime",
        "replaced",
        "leases are taken, renewed, lapse and are freed on the lease clock (server process only, _lease_clock)",
        (
            "prefect.server.concurrency.lease_storage.filesystem:ConcurrencyLeaseStorage.create_lease",
            "datetime.now(timezone.utc)",
        ),
    ),
    _e(
        "prefect.server.api.concurrency_limits_v2:datetime",
        "replaced",
        "leases are taken, renewed, lapse and are freed on the lease clock (server process only, _lease_clock)",
        (
            "prefect.server.api.concurrency_limits_v2:bulk_decrement_active_slots_with_lease",
            "datetime.now(timezone.utc)",
        ),
    ),
    _e(
        "prefect.server.services.repossessor:datetime",
        "replaced",
        "leases are taken, renewed, lapse and are freed on the lease clock (server process only, _lease_clock)",
        ("prefect.server.services.repossessor:revoke_expired_lease", "datetime.now(timezone.utc)"),
    ),
    _e(
        "prefect.server.services.repossessor:revoke_expired_lease",
        "read",
        "the repossessor's pass, run when the lease clock moves (server process only)",
    ),
    _e(
        "prefect.server.concurrency.lease_storage.memory:ConcurrencyLeaseStorage.read_expired_lease_ids",
        "read",
        "the leases lapsed by the lease clock's time (server process only)",
    ),
    _e(
        "prefect.concurrency.services:ConcurrencySlotAcquisitionWithLeaseService.send",
        "wrapped",
        "who asks for slots (its virtual line): the service answers on its own loop",
        ("prefect.concurrency._asyncio:aacquire_concurrency_slots_with_lease", "service.send("),
    ),
    _e(
        "prefect.concurrency.services:ConcurrencySlotAcquisitionWithLeaseService._handle",
        "wrapped",
        "an acquisition served on the service's loop waits on its asker's line",
        ("prefect._internal.concurrency.services:FutureQueueService._handle", "await self.acquire(*send_item)"),
    ),
    _e(
        "prefect.concurrency.services:asyncio",
        "replaced",
        "the wait for a slot after a 423 (its Retry-After) is virtual",
        (
            "prefect.concurrency.services:ConcurrencySlotAcquisitionWithLeaseService.acquire",
            "await asyncio.sleep(retry_after)",
        ),
    ),
    _e(
        "prefect.concurrency.services:_no_limits_cache",
        "replaced",
        "tag sets with no limits, cached process-wide for 5 s: empty for each run, put back after it",
    ),
    _e(
        "prefect.concurrency._leases:threading",
        "replaced",
        "the lease renewal thread waits its 45 s on the server's lease clock",
        ("prefect.concurrency._leases:_lease_renewal_loop", "stop_event.wait(lease_duration * _RENEWAL_FRACTION)"),
        ("prefect.concurrency._leases:_start_lease_renewal_thread", "stop_event = threading.Event()"),
    ),
    _e(
        "prefect.concurrency._sync:acquire_concurrency_slots_with_lease",
        "wrapped",
        "the lease clock at the asker's virtual now; its wait for slots kept (outcome.slots)",
        ("prefect.concurrency._sync:concurrency", "acquire_concurrency_slots_with_lease("),
    ),
    _e(
        "prefect.concurrency._asyncio:aacquire_concurrency_slots_with_lease",
        "wrapped",
        "the same, for async tasks",
        ("prefect.concurrency._asyncio:concurrency", "aacquire_concurrency_slots_with_lease("),
    ),
    _e(
        "prefect._internal.concurrency.services:_QueueServiceBase._task",
        "read",
        "an acquisition service still asking for a slot when its run ends is stopped and its loop task cancelled",
        ("prefect._internal.concurrency.services:_QueueServiceBase.start", "self._task = self._loop.create_task("),
        by_source=True,
    ),
    _e(
        "prefect._internal.concurrency.services:_QueueServiceBase._queue",
        "read",
        "the requests queued behind an abandoned acquisition: their futures are cancelled",
        ("prefect._internal.concurrency.services:_QueueServiceBase.__init__", "self._queue: queue.Queue"),
        by_source=True,
    ),
    _e(
        "prefect._internal.concurrency.services:_QueueServiceBase._stop",
        "read",
        "the same: taken out of Prefect's registry of services",
    ),
    _e(
        "prefect.concurrency._sync:maintain_concurrency_lease",
        "wrapped",
        "a holder gives its slots back at its virtual now: the others catch up with it first, renewals going on",
        ("prefect.concurrency._sync:concurrency", "with maintain_concurrency_lease("),
    ),
    _e(
        "prefect.concurrency._asyncio:amaintain_concurrency_lease",
        "wrapped",
        "the same, for async tasks",
        ("prefect.concurrency._asyncio:concurrency", "async with amaintain_concurrency_lease("),
    ),
    _e(
        "prefect.concurrency._sync:release_concurrency_slots_with_lease",
        "wrapped",
        "the lease clock at the giver's virtual now before slots are given back",
        ("prefect.concurrency._sync:concurrency", "release_concurrency_slots_with_lease("),
    ),
    _e(
        "prefect.concurrency._asyncio:arelease_concurrency_slots_with_lease",
        "wrapped",
        "the same, for async tasks",
        ("prefect.concurrency._asyncio:concurrency", "arelease_concurrency_slots_with_lease("),
    ),
    _e(
        "os.environ:PREFECT__SERVER_EPHEMERAL",
        "read",
        "set for the harness's server: it runs as Prefect's own test server does (its services, no UI)",
        ("prefect.server.api.server:create_app", 'os.getenv("PREFECT__SERVER_EPHEMERAL")'),
        by_source=True,
    ),
    _e(
        "os.environ:PREFECT__SERVER_FINAL",
        "read",
        "set for the harness's server, as Prefect sets it for its own",
        ("prefect.server.api.server:create_app", 'os.getenv("PREFECT__SERVER_FINAL")'),
        by_source=True,
    ),
    _e(
        f"{TR}:ThreadPoolTaskRunner._max_workers",
        "read",
        "how many submitted task runs run at once: the rest wait queued, which the exit gate counts",
        (f"{TR}:ThreadPoolTaskRunner.__init__", "self._max_workers"),
        by_source=True,
    ),
    _e(
        "prefect._internal.concurrency.services:_QueueServiceBase._stopped",
        "read",
        "whether a set-aside events worker was stopped meanwhile (started anew if needed)",
        ("prefect._internal.concurrency.services:_QueueServiceBase.__init__", "self._stopped"),
        by_source=True,
    ),
    # -- Other libraries.
    _e("httpx._transports.default:create_ssl_context", "replaced", "one default SSL context per session"),
    _e(
        "respx:MockRouter.async_handler",
        "wrapped",
        "overridden in a subclass (injector._Router): an AsyncClient's latency is awaited, not slept in its loop",
        ("respx.mocks:Mocker.async_handler", "router.async_handler("),
    ),
    # -- Prefect's runner serving a flow run cancelled through the API (served, ``cancel: {how: runner}``).
    _e(
        "prefect.runner._hook_runner:_run_hooks",
        "wrapped",
        "the flow's on_cancellation and on_crashed hooks the runner runs in its own process, recorded as run",
        ("prefect.runner._hook_runner:HookRunner.run_cancellation_hooks", "await _run_hooks(hooks, flow_run, flow"),
        prefect=">=3.9",
    ),
    _e(
        "prefect.runner.runner:Runner._tmp_dir",
        "replaced",
        "a served run's runner keeps its storage in the history's folder, not in the temporary folder",
        ("prefect.runner.runner:Runner.__init__", "self._tmp_dir: Path = ("),
        prefect=">=3.9",
        by_source=True,
    ),
    _e(
        "prefect._internal.control_listener:_configured_port",
        "read",
        "the runner's control channel, which the engine connects to on loopback: let through the network guard",
        ("prefect._internal.control_listener:start", 'sock.connect(("127.0.0.1", _configured_port))'),
        prefect=">=3.9",
    ),
    _e(
        "prefect.flow_engine:run_flow_in_subprocess",
        "read",
        "how the runner starts a served flow's process: a spawned interpreter given the pickled flow, which "
        "sets the harness up there as it is unpickled (served._stand_in)",
        ("prefect.flow_engine:run_flow_in_subprocess", "cloudpickle_wrapped_call("),
        prefect=">=3.9",
    ),
    _e("aiohttp.connector:_SSL_CONTEXT_VERIFIED", "replaced", "aiohttp's default context trusts the session's CA"),
    _e("aiohttp.connector:_make_ssl_context", "read", "builds that context"),
    _e("aiohttp.connector:DefaultResolver", "replaced", "aiohttp resolves through socket.getaddrinfo (the guard)"),
    _e("urllib.request:_opener", "replaced", "urlopen builds an opener of the run's own, with no proxies"),
    _e("certifi:where", "replaced", "a client given certifi's bundle by name trusts the session's CA"),
    _e("ssl:SSLContext.wrap_socket", "wrapped", "a verifying client context learns the session's CA"),
    _e("ssl:SSLContext.wrap_bio", "wrapped", "the same, for asyncio's TLS"),
    _e("asyncio:Task._fut_waiter", "read", "what an asyncio task awaits: gathered task runs, an idle flow"),
    _e(
        "asyncio.tasks:_GatheringFuture._children",
        "read",
        "the awaitables a gather waits on: a task run gathered by its flow joins the flow's line",
        ("asyncio.tasks:_GatheringFuture.__init__", "self._children = children"),
        by_source=True,
    ),
    _e("socket:socket.connect", "wrapped", "the network guard: declared hosts to the wire server, the rest refused"),
    _e("socket:socket.connect_ex", "wrapped", "the same"),
    _e("socket:getaddrinfo", "wrapped", "the network guard: declared hosts resolve to loopback, the rest refused"),
)


class Via(types.ModuleType):
    """A module as another module sees it: one attribute replaced, every other one the real module's."""

    def __init__(self, real: types.ModuleType, name: str, value: Any) -> None:
        super().__init__(real.__name__)
        self._real, self._name, self._value = real, name, value

    def __getattr__(self, name: str) -> Any:
        return self._value if name == self._name else getattr(self._real, name)


def prefect_version() -> tuple[int, int]:
    """The installed Prefect's major and minor (read from its distribution, not cached)."""
    major, minor = importlib.metadata.version("prefect").split(".")[:2]
    return int(major), int(minor)


@functools.cache
def _installed() -> tuple[int, int]:
    return prefect_version()  # read once a process: every run replaces a score of internals


@functools.cache
def entry(where: str, version: tuple[int, int] | None = None) -> Internal:
    """The table's entry for ``where`` on the installed Prefect (or ``version``)."""
    version = version or _installed()
    for internal in INTERNALS:
        if internal.where == where and internal.applies(version):
            return internal
    raise InternalMissing(f"{where} is not in harness.run.internals' table for Prefect {version[0]}.{version[1]}")


def resolve(where: str) -> tuple[Any, str]:
    """The object holding ``where``'s attribute, and the attribute's name."""
    module, _, path = where.partition(":")
    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    return owner, name


def replace(stack: contextlib.ExitStack, where: str, new: Any, owner: Any = None) -> Any:
    """Set ``new`` in place of the internal at ``where`` until ``stack`` closes; returns what was there.

    ``owner`` is the object to set it on, when it is an instance or already at hand.
    """
    return wrap(stack, where, lambda original: new, owner)


def wrap(stack: contextlib.ExitStack, where: str, make: Callable[[Any], Any], owner: Any = None) -> Any:
    """Set ``make(original)`` in place of the internal at ``where`` until ``stack`` closes; returns the original."""
    internal = entry(where)
    if internal.use == "read":
        raise InternalMissing(f"{where} is listed as read, not replaced, in harness.run.internals")
    if owner is None:
        owner, name = resolve(where)
    else:
        name = where.rpartition(".")[2].rpartition(":")[2]
    original = getattr(owner, name)
    stack.enter_context(mock.patch.object(owner, name, make(original)))
    return original


@contextlib.contextmanager
def replaced(where: str, new: Any, owner: Any = None) -> Iterator[Any]:
    """``replace`` for one internal, as a context manager."""
    with contextlib.ExitStack() as stack:
        yield replace(stack, where, new, owner)


def check_prefect() -> None:
    """Stop (or warn, with ``HARNESS_ALLOW_UNTESTED_PREFECT=1``) when the installed Prefect is untested."""
    from harness._errors import UntestedPrefect  # the harness's process only: the server's never checks

    version = importlib.metadata.version("prefect")
    major, minor = prefect_version()
    oldest, newest = (int(v.split(".")[1]) for v in (OLDEST, NEWEST))
    if major == 3 and oldest <= minor <= newest:
        return
    message = (
        f"prefect-fault-harness is tested with Prefect {OLDEST} to {NEWEST} ({SUPPORTED}); Prefect {version} "
        f"is installed. Its answers rest on Prefect internals that may have changed: install a tested Prefect "
        f"(pip install 'prefect{SUPPORTED}'), or set {ALLOW_UNTESTED}=1 to run anyway."
    )
    if os.environ.get(ALLOW_UNTESTED) == "1":
        warnings.warn(message, stacklevel=2)
        return
    raise UntestedPrefect(message)
