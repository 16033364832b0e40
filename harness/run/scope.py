"""What a scenario run changes in the process, set for that run only and put back after it.

The pytest plugin loads in every test run of an environment, so the harness is
a guest in the user's process: between two runs the process must look as it
would without the harness. For the length of one run (``RunScope.entered``):

- ``os.environ`` holds the session's Prefect settings (``PREFECT_API_URL``,
  a private ``PREFECT_HOME``, ...), for a subprocess the flow starts;
- Prefect's settings context, and its process-global fallback (what a thread
  with no context of its own reads), are the session's, as
  ``prefect_test_harness`` sets them;
- the session's throwaway CA is trusted (``SSL_CERT_FILE``, ``certifi.where()``,
  aiohttp's default context);
- Prefect's API clients and httpx's default clients share one SSL context.

Prefect's background workers (events, API logs) are found by a key that does
not name their server (the events worker's is its client type), so a worker
started by the user's tests would carry a scenario's events to the user's
server, and one started by a scenario the user's events to the session's. The
user's workers are drained (what they hold is sent, then they stop) when a run
starts, as ``prefect_test_harness`` drains them at its exit. The session's own
events worker is taken out of Prefect's registry when a run ends and put back
when the next starts (``Parked``), so its connection is kept and nothing of the
user's can reach it; it is drained when the session closes. Prefect servers the
user's tests started (found at the run's start) are named in ``foreign``: their
API traffic passes through the transport and the network guard and is never a
call of the scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.run.environ import environ
from harness.run.internals import replace, wrap
from harness.run.wire.backend import Wire


class RunScope:
    """The session's settings, trust and hooks, built once and entered for each run."""

    def __init__(self, environment: Mapping[str, str], api_url: str, results: Path, wire: Wire | None) -> None:
        import prefect.context
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_RESULTS_LOCAL_STORAGE_PATH

        self.environment = dict(environment)
        self.api_url = api_url
        self.wire = wire
        self._ssl = SharedSsl()
        # The settings a fresh process would read from the session's environment, built once (a copy of
        # Prefect's settings costs ~40 ms, as much as a whole run). The heartbeat thread's join costs most
        # of a second per flow run, and None (off) cannot be set through the environment; the result
        # storage is the session's, emptied after every run (``own_results``).
        with environ(self.environment):
            root = prefect.context.root_settings_context()
        settings = root.settings.copy_with_update(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}
        )
        self._profile = root.profile
        self._settings = settings
        self.parked = Parked(api_url)

    @contextlib.contextmanager
    def entered(self) -> Iterator[list[str]]:
        """The process pointed at the session's server for one run; yields the other Prefect APIs in use."""
        import prefect.context

        foreign = other_prefect_apis(self.api_url)
        drain_workers()  # the user's workers flush to the user's server, before anything points elsewhere
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.parked.restored())  # exits last: what the run started, set aside
            stack.enter_context(environ(self.environment))
            settings = prefect.context.SettingsContext(profile=self._profile, settings=self._settings)
            context = stack.enter_context(settings)
            replace(stack, "prefect.context:GLOBAL_SETTINGS_CONTEXT", context)
            if self.wire is not None:
                stack.enter_context(self.wire.authority.trusted())
            stack.enter_context(self._ssl.installed())
            yield foreign

    def close(self) -> None:
        """Drain the session's parked workers: their events reach the server before it stops."""
        self.parked.drain()


class Parked:
    """The session's own Prefect workers, out of Prefect's registry between runs."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self._workers: dict[int, Any] = {}

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        """Put the session's workers back for one run; afterwards set aside those of the session, drain the rest."""
        registry = _registry()
        leftovers: list[Any] = []
        with _locked(registry):
            for key, worker in self._workers.items():
                if worker._stopped:
                    continue  # stopped by Prefect meanwhile (its loop's shutdown, a fork): started anew if needed
                if registry._instances.setdefault(key, worker) is not worker:
                    leftovers.append(worker)
            self._workers = {}
        _drain(leftovers)
        try:
            yield
        finally:
            with _locked(registry):
                ours = {k: w for k, w in list(registry._instances.items()) if self._ours(w)}
                for key in ours:
                    del registry._instances[key]
                self._workers = ours
            drain_workers()  # anything else started during the run, by a thread of the user's

    def _ours(self, worker: Any) -> bool:
        url = getattr(getattr(worker, "_client", None), "_api_url", None)
        return not getattr(worker, "_stopped", True) and isinstance(url, str) and url.rstrip("/") == self.api_url

    def drain(self) -> None:
        workers, self._workers = list(self._workers.values()), {}
        _drain(workers)


def _registry() -> Any:
    """Prefect's registry of queue services (events, API logs): one dict, on the base class."""
    from prefect.events.worker import EventsWorker

    return EventsWorker


@contextlib.contextmanager
def _locked(registry: Any) -> Iterator[None]:
    """The registry's locks, in Prefect's own order (one lock before Prefect 3.8)."""
    with registry._instance_lock, getattr(registry, "_instance_cache_lock", contextlib.nullcontext()):
        yield


def other_prefect_apis(own: str) -> list[str]:
    """The loopback Prefect APIs this process is pointed at or serves, other than the session's own.

    The settings in force (the user's ``prefect_test_harness`` sets them for its
    session, the process-global ones included), ``PREFECT_API_URL``, and the
    servers Prefect's ``SubprocessASGIServer`` started.
    """
    import prefect.context

    urls: list[str | None] = [
        prefect.context.get_settings_context().settings.api.url,
        prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.api.url,
        os.environ.get("PREFECT_API_URL"),
    ]
    server: Any = sys.modules.get("prefect.server.api.server")
    if server is not None:
        urls += [getattr(s, "api_url", None) for s in list(server.SubprocessASGIServer._instances.values())]
    found = [u.rstrip("/") for u in urls if u and _loopback(u) and u.rstrip("/") != own.rstrip("/")]
    return list(dict.fromkeys(found))


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def drain_workers() -> None:
    """Flush and stop Prefect's background workers (events, API logs), as ``prefect_test_harness`` does at exit.

    A worker is started again, for the settings then in force, the next time
    something sends an event or a log.
    """
    registry = _registry()
    with _locked(registry):
        workers = list(registry._instances.values())
    _drain(workers)


def _drain(workers: list[Any], timeout: float = 10.0) -> None:
    """Stop ``workers`` once what they hold is sent (at most ``timeout`` seconds); one that cannot is left to Prefect.

    A worker Prefect cannot drain (its loop gone) is logged and taken out of the
    registry, never raised into a run. The worker's own "Still processing items"
    warning, which says only that it waits, is kept off the console.
    """
    if not workers:
        return
    from prefect.utilities.asyncutils import run_coro_as_sync

    futures = []
    for worker in workers:
        try:
            futures.append(worker._drain(at_exit=False))
        except Exception as exc:  # noqa: BLE001 (a broken worker of the user's must not fail a run)
            logging.getLogger(__name__).warning("could not drain Prefect's %s: %s", type(worker).__name__, exc)
            _forget(worker)

    async def wait() -> None:
        if futures:
            await asyncio.wait([asyncio.wrap_future(f) for f in futures], timeout=timeout)

    worker_log = logging.getLogger("EventsWorker")
    level = worker_log.level
    worker_log.setLevel(logging.ERROR)
    try:
        run_coro_as_sync(wait())
    finally:
        worker_log.setLevel(level)


def _forget(worker: Any) -> None:
    registry = _registry()
    with _locked(registry):
        for key, value in list(registry._instances.items()):
            if value is worker:
                del registry._instances[key]


class _SslShim(types.ModuleType):
    """``ssl`` for Prefect's API client: one context per set of arguments, built once.

    Prefect builds a verifying context (loading the CA bundle, ~50 ms) for every
    client it opens; the harness's API is plain HTTP on loopback, so the context
    is never used for a handshake.
    """

    def __init__(self, real: types.ModuleType) -> None:
        super().__init__("ssl")
        self._real = real
        self._cache: dict[tuple[Any, ...], Any] = {}

    def create_default_context(self, *args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in self._cache:
            self._cache[key] = self._real.create_default_context(*args, **kwargs)
        return self._cache[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def own_results() -> Iterator[Path]:
    """A result storage of the scenario's own: no cache record or persisted result of another scenario.

    Prefect keeps task cache records and persisted results in
    ``PREFECT_RESULTS_LOCAL_STORAGE_PATH`` (by default under ``PREFECT_HOME``),
    shared by every flow run that uses it; a second scenario with the same
    inputs would be served from the first one's cache, with no call at all.
    The folder is removed afterwards, and Prefect's cache of storage objects
    forgets it. When the session already points the setting at a folder of
    its own (``harness-results-*``, set once: a copy of Prefect's settings
    costs as much CPU as the rest of a run), that folder is used and emptied
    after the run instead: each run still starts with no record.
    """
    from prefect.results import _default_storages
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    current = PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()
    if current is not None and Path(current).name.startswith("harness-results-") and Path(current).is_dir():
        current = Path(current)
        try:
            yield current
        finally:
            for key in [k for k in _default_storages if k[1] == str(current)]:
                del _default_storages[key]
            shutil.rmtree(current, ignore_errors=True)
            current.mkdir()
        return
    path = Path(tempfile.mkdtemp(prefix="harness-results-"))
    try:
        with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: path}):
            yield path
    finally:
        for key in [k for k in _default_storages if k[1] == str(path)]:
            del _default_storages[key]
        shutil.rmtree(path, ignore_errors=True)


class SharedSsl:
    """One SSL context per session for Prefect's API clients and httpx's default clients, installed per run.

    No TLS handshake happens on the loopback API or under respx, yet every
    client would load the CA bundle again (tens of milliseconds each). The
    contexts are built during a run (the session's CA trusted) and kept for the
    next; outside a run the real functions are back in place.
    """

    def __init__(self) -> None:
        self._ssl: dict[Any, Any] = {}
        self._create: dict[Any, Any] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:  # built once a session (Prefect's, httpx's functions as they are then)
            wrap(stack, "prefect.client.orchestration:ssl", lambda real: _cached(self._ssl, real, _SslShim))
            wrap(
                stack,
                "httpx._transports.default:create_ssl_context",
                lambda real: _cached(self._create, real, _shared_ssl_context),
            )
            yield


def _cached(cache: dict[Any, Any], real: Any, make: Callable[[Any], Any]) -> Any:
    if real not in cache:
        cache[real] = make(real)
    return cache[real]


def _shared_ssl_context(create: Callable[..., Any]) -> Callable[..., Any]:
    """httpx's ``create_ssl_context``, built once per set of default arguments."""

    @functools.cache
    def default_context(trust_env: bool) -> Any:
        return create(verify=True, cert=None, trust_env=trust_env)

    @functools.wraps(create)
    def shared(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is True and cert is None:
            return default_context(trust_env)
        return create(verify=verify, cert=cert, trust_env=trust_env)

    return shared
