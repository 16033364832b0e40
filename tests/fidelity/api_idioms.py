"""The API oracle's flows: plain Prefect flows that call no API of their own, only Prefect's.

``steps`` is cancelled by hand in the reference: the task run named by
``CANCEL_AFTER`` sets the flow run ``Cancelling`` straight on the server (not
through the case's proxy) as its body ends, as a user cancels a run from the
UI; the harness does the same with ``cancel: {at: {after_return: ...}}``.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, task

from tests.fidelity.hook_log import logged

CANCEL_AFTER = "FIDELITY_CANCEL_AFTER"  # "N": step(N) cancels its flow run as it returns
SERVER = "FIDELITY_SERVER_URL"  # the server itself, for the cancellation by hand


@task
def add(x: int, y: int) -> int:
    return x + y


@flow
def sums() -> int:
    return add(add(1, 2), 3)


@task
async def aadd(x: int, y: int) -> int:
    return x + y


@flow
async def async_sums() -> int:
    return await aadd(await aadd(1, 2), 3)


def noted(flow: Any, flow_run: Any, state: Any) -> None:
    """An ``on_cancellation`` hook: the oracle counts that it ran (``hook_log``)."""


@task
def step(n: int) -> int:
    if os.environ.get(CANCEL_AFTER) == str(n):
        from prefect.client.orchestration import SyncPrefectClient
        from prefect.context import FlowRunContext
        from prefect.states import Cancelling

        run = FlowRunContext.get()
        assert run is not None and run.flow_run is not None
        with SyncPrefectClient(os.environ[SERVER]) as client:
            client.set_flow_run_state(run.flow_run.id, Cancelling(message="cancelled by hand"), force=True)
    return n


@flow(on_cancellation=[logged(noted)])
def steps() -> int:
    return step(1) + step(2) + step(3)
