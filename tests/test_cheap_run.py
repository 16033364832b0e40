"""A cheaper flow run: what each cut of a run's cost relies on, pinned.

The result folder: a copy of Prefect's settings costs about 20 ms of CPU, as much as the rest of a run in the
harness's process, so the session sets its result folder once and empties it after every run; each run still
starts with no cache record of another (the isolation tests/test_isolation.py pins), and copies no settings.

The server's default result storage: every flow run's setup read it from the server twice (``GET
/admin/storage``, two of a run's seven API calls, about 5 ms of a run's wall time); the session reads it once
per API and reads it again after Prefect's client writes it, so a flow that sets or clears it is served the
new value, as on a plain server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import Scenario, Session, check
from harness.run.hooks import STORAGE_READ, STORAGE_WRITES, server_storage_read_once

COUNT = "https://api.example.test/count"

CACHED = f"""
name: cached, healthy
flow: tests.flows:cached_flow
endpoints:
  - request: GET {COUNT}
    responses: [{{json: {{count: 3}}}}]
expect:
  flow: Completed
  result: 3
  calls: {{GET {COUNT}: 1}}
"""


def test_a_run_copies_no_settings_and_starts_with_an_empty_result_folder(
    harness_session: Session, scenario_from: Callable[[str], Scenario], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Result folder set once per session (a settings copy costs ~20 ms) and emptied after each run: isolated."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH
    from prefect.settings.models.root import Settings

    scenario = scenario_from(CACHED)
    assert check(scenario, harness_session.run(scenario)) == []
    folder = Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value())
    assert folder.name.startswith("harness-results-")
    copies: list[Any] = []
    original = Settings.copy_with_update

    def counted(self: Settings, *args: Any, **kwargs: Any) -> Settings:
        copies.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Settings, "copy_with_update", counted)
    for _ in range(2):  # the second run is served no cache record of the first: it calls the endpoint again
        assert check(scenario, harness_session.run(scenario)) == []
        assert folder.is_dir() and list(folder.iterdir()) == []
    assert copies == []
    assert Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()) == folder


def _storage_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the ``/admin/storage`` requests Prefect's sync and async clients send from now on."""
    import httpx

    sent: list[str] = []
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def counted(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        if request.url.path.endswith("/admin/storage"):
            sent.append(request.method)
        return sync_send(self, request, *args, **kwargs)

    async def acounted(self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        if request.url.path.endswith("/admin/storage"):
            sent.append(request.method)
        return await async_send(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", counted)
    monkeypatch.setattr(httpx.AsyncClient, "send", acounted)
    return sent


def test_flow_runs_read_the_servers_default_result_storage_once_per_session(
    harness_session: Session, scenario_from: Callable[[str], Scenario], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow run's setup reads it twice (result store, persist or not): after the session's first, no request."""
    scenario = scenario_from(CACHED)
    assert check(scenario, harness_session.run(scenario)) == []  # the session has read it by now
    sent = _storage_reads(monkeypatch)
    for _ in range(2):
        assert check(scenario, harness_session.run(scenario)) == []
    assert sent == []


def test_a_flow_that_sets_the_servers_default_result_storage_is_served_it(
    harness_session: Session, scenario_from: Callable[[str], Scenario], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Why reading it once is safe: Prefect's client drops the kept value when it writes one, so the next flow run
    (as on a plain server) persists its task's result and cache record in the storage block set mid-session, and
    in the session's folder again once it is cleared."""
    from prefect.client.orchestration import get_client
    from prefect.filesystems import LocalFileSystem
    from prefect.results import _read_server_default_result_storage_block_id

    scenario = scenario_from(CACHED)
    assert check(scenario, harness_session.run(scenario)) == []
    assert _read_server_default_result_storage_block_id() is None  # kept by now
    block_folder = tmp_path / "server-default"
    block_id = LocalFileSystem(basepath=str(block_folder)).save(f"harness-cheap-run-{uuid.uuid4().hex}")
    sent = _storage_reads(monkeypatch)
    with get_client(sync_client=True) as client:
        try:
            client.update_server_default_result_storage(block_id)
            assert _read_server_default_result_storage_block_id() == block_id
            assert check(scenario, harness_session.run(scenario)) == []
            assert block_folder.is_dir() and list(block_folder.iterdir()) != []  # the run wrote there
        finally:
            client.clear_server_default_result_storage()
    written = sorted(block_folder.iterdir())
    assert _read_server_default_result_storage_block_id() is None
    assert check(scenario, harness_session.run(scenario)) == []
    assert sorted(block_folder.iterdir()) == written  # back in the session's own folder
    assert sent == ["PUT", "GET", "DELETE", "GET"]  # each write is followed by one read, and no more


def test_the_async_client_keeps_and_drops_the_same_value() -> None:
    """The async client (async flows) reads through the same kept value, dropped by its own writes too."""
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient
    from prefect.client.schemas.objects import ServerDefaultResultStorage

    reads: list[str] = []
    answer = ServerDefaultResultStorage(default_result_storage_block_id=None)

    class Fake:
        api_url = "http://127.0.0.1:1/api"

    def fake_read(self: Any) -> ServerDefaultResultStorage:
        reads.append("sync")
        return answer

    async def fake_aread(self: Any) -> ServerDefaultResultStorage:
        reads.append("async")
        return answer

    async def fake_awrite(self: Any, *args: Any) -> None:
        reads.append("write")

    originals = {
        (cls, name): vars(cls)[name]
        for cls in (PrefectClient, SyncPrefectClient)
        for name in (STORAGE_READ, *STORAGE_WRITES)
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SyncPrefectClient, STORAGE_READ, fake_read)
        patch.setattr(PrefectClient, STORAGE_READ, fake_aread)
        patch.setattr(PrefectClient, STORAGE_WRITES[1], fake_awrite)
        import asyncio

        with server_storage_read_once() as cache:
            client = Fake()
            assert SyncPrefectClient.read_server_default_result_storage(client) == answer  # type: ignore[arg-type]
            assert asyncio.run(PrefectClient.read_server_default_result_storage(client)) == answer  # type: ignore[arg-type]
            assert reads == ["sync"] and list(cache) == [Fake.api_url]
            asyncio.run(PrefectClient.clear_server_default_result_storage(client))  # type: ignore[arg-type]
            assert cache == {}
            asyncio.run(PrefectClient.read_server_default_result_storage(client))  # type: ignore[arg-type]
            assert reads == ["sync", "write", "async"]
        assert vars(SyncPrefectClient)[STORAGE_READ] is fake_read  # undone: what was there before
    assert {key: vars(key[0])[key[1]] for key in originals} == originals
