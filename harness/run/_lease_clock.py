"""The lease clock of the harness's Prefect server (server process only: ``_serve.py`` loads it by path).

Prefect holds a concurrency slot under a lease that lapses on the server's
clock unless its holder renews it; the server's repossessor frees a lapsed
lease's slots. A scenario's waits are skipped on the harness's virtual clock,
so the server's leases must follow that clock, or a slot leaked by a killed
process would stay taken for a minute of real time. Here Prefect's lease
storage, its lease routes and its repossessor read "now" on the lease clock:
the moment the server started plus ``OFFSET``, the virtual seconds the
harness's runs have spent since, which only the harness moves (forward only),
through one route of its own (``PATH``). Real time does not move it: between
two moves nothing lapses, as nothing of a scenario happens between two of its
virtual instants but compute. ``POST {"offset": S}`` sets it to S when S is
later, and ends with one pass of Prefect's own repossessor at the new time
(its service also runs on its own, every ``loop_seconds`` of real time,
against the same clock); ``{"seed": N}`` seeds the server's jitter (the
``Retry-After`` of a 423) for a scenario. The answer is the clock's offset,
moved or not. Nothing else of the server reads this clock.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

PATH = "/__harness__/lease_clock"
OFFSET = [0.0]  # seconds the harness's scenarios skipped, as the server's leases count them

# The modules of Prefect's server that read the time a lease is taken, renewed, lapses or is freed at.
READERS = (
    "prefect.server.concurrency.lease_storage.memory",
    "prefect.server.concurrency.lease_storage.filesystem",
    "prefect.server.api.concurrency_limits_v2",
    "prefect.server.services.repossessor",
)


STARTED = datetime.now(UTC)


class LeaseDatetime(datetime):
    """``datetime`` as the lease readers see it: ``now`` is the lease clock's."""

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return (STARTED + timedelta(seconds=OFFSET[0])).astimezone(tz)


def install(stack: Any, replace: Any) -> None:
    """Give each lease reader the lease clock's ``datetime`` (``replace``: ``internals.replace``)."""
    for module in READERS:
        replace(stack, f"{module}:datetime", LeaseDatetime)


async def repossess() -> int:
    """One pass of Prefect's repossessor: every lease lapsed by now revoked, its slots freed. Returns how many."""
    from prefect.server.concurrency.lease_storage import get_concurrency_lease_storage
    from prefect.server.database import provide_database_interface
    from prefect.server.services.repossessor import revoke_expired_lease

    storage = get_concurrency_lease_storage()
    lapsed = await storage.read_expired_lease_ids()
    for lease_id in lapsed:
        await revoke_expired_lease(lease_id, db=provide_database_interface(), lease_storage=storage)
    return len(lapsed)


def wrapped(app: Any) -> Any:
    """Prefect's ASGI ``app`` with the lease clock's route in front of it."""

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        asked = json.loads(body or b"{}")
        if "seed" in asked:
            random.seed(asked["seed"])
        revoked = 0
        if asked.get("offset") is not None:
            OFFSET[0] = max(OFFSET[0], float(asked["offset"]))
            revoked = await repossess()
        answer = json.dumps({"offset": OFFSET[0], "revoked": revoked}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return serve
