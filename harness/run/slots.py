"""``concurrency_limits:``: Prefect's tag and global concurrency limits, their slots and leases, on the virtual clock.

A scenario declares limits (``declared``): they are created on the session's
server before its first run, as a user creates them (``prefect
concurrency-limit create``, a global limit), and deleted after its last.
Prefect's task engine takes a slot of every ``tag:NAME`` limit of a task
run's tags, under a lease of 60 s that a thread of the client renews every
45 s; the server's repossessor frees the slots of a lease that lapsed (its
holder died). A run waits for a slot when the server answers 423: the
client sleeps the ``Retry-After`` it is given, on its acquisition service's
loop, and asks again.

For one run (``Slots.installed``), all of that follows the virtual clock:

- the server's leases are on its lease clock (``_lease_clock``), which the
  harness sets to the virtual time of whoever asks for, renews or gives back
  a slot, and to the end of every wait for one; each move ends with a pass
  of Prefect's own repossessor;
- the client's wait for a slot is a virtual wait on the waiting task run's
  line, which then waits (real time, bounded) until the other task runs have
  caught up with its end, as in real time they would have run meanwhile:
  a holder that finishes before then has given its slot back;
- the renewal thread waits its 45 s on the lease clock: when the clock is
  moved past a renewal's time, it is first moved to that time and the
  thread renews there, as it would have.

Each acquisition's virtual wait is kept (``waited``), and after the run the
slots each limit still holds (``held``): the outcome's ``slots``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import http.client
import inspect
import json
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from harness.run.clock import CATCH_UP_S, Clock, Line
from harness.run.injector import harness_requests
from harness.run.internals import replace, wrap
from harness.scenario.model import Scenario

LEASE_CLOCK = "/__harness__/lease_clock"  # the lease clock's route on the harness's server (``_lease_clock.PATH``)
SERVICE = "prefect.concurrency.services:ConcurrencySlotAcquisitionWithLeaseService"

# The line an acquisition served on a service's loop waits on, its waits so far, and its timeout.
_WAITER: contextvars.ContextVar[tuple[Line, list[float], float | None] | None] = contextvars.ContextVar(
    "harness_slot_waiter", default=None
)


@dataclass(frozen=True, slots=True)
class Waited:
    """One acquisition of slots: the limits asked, whose it was (a task run's id, or None), its virtual wait."""

    names: tuple[str, ...]
    holder: Any
    seconds: float


@dataclass(frozen=True, slots=True)
class LimitSlots:
    """One declared limit after a run: the slots it still held, and each acquisition's wait, by task run."""

    limit: int
    held_after: int | None  # None: the limit could not be read back
    waited: tuple[tuple[str, float], ...]  # (task run's name, or "flow"; virtual seconds)

    @property
    def longest(self) -> float:
        return max((s for _, s in self.waited), default=0.0)


def server_names(scenario: Scenario) -> dict[str, str]:
    """Each declared limit's name as written (``db``) -> its name on the server (``tag:db``)."""
    limits = scenario.concurrency_limits
    if limits is None:
        return {}
    return {**{n: f"tag:{n}" for n in limits.tag}, **{n: n for n in limits.global_}}


class LeaseClock:
    """The server's lease clock, as the harness moves it: one loopback request, outside respx and the guard."""

    def __init__(self, api_url: str) -> None:
        parts = urlsplit(api_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def post(self, offset: float | None = None, seed: str | None = None) -> float:
        """Move the clock to ``offset`` (never back), run the repossessor; returns the clock's offset."""
        asked: dict[str, Any] = {"offset": offset}
        if seed is not None:
            asked["seed"] = seed
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request("POST", LEASE_CLOCK, json.dumps(asked), {"content-type": "application/json"})
            answer = connection.getresponse()
            body = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"the server's lease clock answered {answer.status}: {body[:200]!r}")
            return float(json.loads(body)["offset"])
        finally:
            connection.close()


@contextlib.contextmanager
def declared(scenario: Scenario, api: Callable[[], Any], api_url: str) -> Iterator[None]:
    """The scenario's limits on the session's server for all its runs (``api``: the session's client)."""
    limits = scenario.concurrency_limits
    if limits is None:
        yield
        return
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    LeaseClock(api_url).post(seed=f"{scenario.seed}:{scenario.name}")  # the 423s' Retry-After jitter, seeded
    tags: list[str] = []
    names: list[str] = []
    try:
        with api() as client, harness_requests():
            for tag, slots in limits.tag.items():
                client.create_concurrency_limit(tag=tag, concurrency_limit=slots)
                tags.append(tag)
            for name, slots in limits.global_.items():
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
                names.append(name)
        yield
    finally:  # every limit made is deleted, also when making the next one failed
        with api() as client, harness_requests():
            for tag in tags:
                with contextlib.suppress(Exception):
                    client.delete_concurrency_limit_by_tag(tag=tag)
            for name in names:
                with contextlib.suppress(Exception):
                    client.delete_global_concurrency_limit_by_name(name=name)


def held(scenario: Scenario) -> dict[str, int | None]:
    """Per declared limit (as written): the slots it holds now, as the server says (the session's client in scope)."""
    from prefect.client.orchestration import get_client

    out: dict[str, int | None] = {}
    with get_client(sync_client=True) as client, harness_requests():
        for name, on_server in server_names(scenario).items():
            try:
                out[name] = int(client.read_global_concurrency_limit_by_name(on_server).active_slots)
            except Exception:  # noqa: BLE001 (gone, or the server cannot say: reported as unknown)
                out[name] = None
    return out


class Slots:
    """One run's slots on the virtual clock (see the module's docstring)."""

    def __init__(self, clock: Clock, api_url: str, rerun_after: float = 0.0) -> None:
        self.clock = clock
        self.lease_clock = LeaseClock(api_url)
        self.waited: list[Waited] = []
        self._lock = threading.Lock()
        self._moving = threading.RLock()  # one move of the lease clock at a time
        self._cond = threading.Condition()
        self._renewals: list[_RenewalWait] = []
        self._senders: dict[Any, Line] = {}  # an acquisition's future -> the line of whoever sent it
        # Keyed by the objects themselves (lines and services hash by identity, and live as long as the run).
        self._answered: dict[Any, float] = {}  # an acquisition service -> the virtual offset it last answered at
        self._giving: dict[Line, float] = {}  # a holder's line -> the virtual offset it gives slots back at
        self._queued: dict[Line, Any] = {}  # an asker's line -> the service it waits in (None: not sent yet)
        self._serving: dict[Any, tuple[Line, Any]] = {}  # a service -> the line it serves now, and its future
        self._start = clock.root.offset  # what the run's clock had skipped when it started (a history's goes on)
        self._real_start = time.monotonic()
        self._base = self.lease_clock.post() + rerun_after
        self.offset = self.lease_clock.post(self._base)

    # -- the lease clock ---------------------------------------------------------------------------------

    def target(self, line: Line) -> float:
        """The lease clock's offset at ``line``'s virtual now, in seconds waited: compute, milliseconds beside a
        lease's minute and different on every run, is left out, so that a lease lapses at the same point of
        the run's waits every time."""
        if self.clock.real_time:  # nothing is skipped: the run's time is the wall's
            return self._base + time.monotonic() - self._real_start
        return self._base + line.offset - self._start

    def move(self, offset: float) -> None:
        """Move the lease clock to ``offset``, stopping at every renewal due on the way for it to renew there."""
        with self._moving:
            with self._cond:  # a renewal thread just started renews at once, then waits: its wait is due first
                until = time.monotonic() + CATCH_UP_S
                while any(w.thread is None and not w.flag for w in self._renewals) and time.monotonic() < until:
                    self._cond.wait(0.01)
            while True:
                with self._cond:
                    due = [w for w in self._renewals if w.due is not None and w.due <= offset and w.alive()]
                    if not due:
                        break
                    first = min(due, key=lambda w: w.due or 0.0)
                    at = first.due or 0.0
                if at > self.offset:
                    self.offset = self.lease_clock.post(at)
                with self._cond:
                    first.woken, first.due = True, None
                    self._cond.notify_all()
                    until = time.monotonic() + CATCH_UP_S
                    while first.due is None and first.alive() and not first.is_set() and time.monotonic() < until:
                        self._cond.wait(0.05)  # it renews (at ``at``), then waits for the next one
            if offset > self.offset:
                self.offset = self.lease_clock.post(offset)

    # -- the client's side -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            wrap(stack, f"{SERVICE}.send", self._sending)
            wrap(stack, f"{SERVICE}._handle", self._handling)
            wrap(stack, "prefect.concurrency.services:asyncio", lambda real: _AsyncioShim(real, self))
            wrap(stack, "prefect.concurrency._leases:threading", lambda real: _ThreadingShim(real, self))
            for where in (
                "prefect.concurrency._sync:acquire_concurrency_slots_with_lease",
                "prefect.concurrency._asyncio:aacquire_concurrency_slots_with_lease",
            ):
                wrap(stack, where, self._acquiring)
            for where in (
                "prefect.concurrency._sync:maintain_concurrency_lease",
                "prefect.concurrency._asyncio:amaintain_concurrency_lease",
            ):
                wrap(stack, where, self._holding)
            for where in (
                "prefect.concurrency._sync:release_concurrency_slots_with_lease",
                "prefect.concurrency._asyncio:arelease_concurrency_slots_with_lease",
            ):
                wrap(stack, where, self._releasing)
            try:
                yield
                self.move(self.target(self.clock.root))  # the run's end: the next run goes on from there
            finally:
                self._abandon_acquisitions()
                with self._cond:
                    for wait in self._renewals:
                        wait.released = True  # any renewal thread left waits in real time, as Prefect's does
                    self._cond.notify_all()

    def _abandon_acquisitions(self) -> None:
        """Stop the services still asking for slots for a caller the run left behind (a task run cancelled by
        its flow's timeout, say). Prefect's would go on asking until its process ends, then give the slot
        back; here the process goes on to the next scenario (or the user's next test), which must not meet
        them."""
        with self._lock:
            busy = list(self._serving.items())
        for service, (_, future) in busy:
            loop, task = service._loop, service._task
            service._stop()
            if loop is not None and task is not None and not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
            future.cancel()  # its caller, if one still waits, is told; so are those queued behind it
            with contextlib.suppress(Exception):
                while (item := service._queue.get_nowait()) is not None:
                    item[-1].cancel()

    def _acquiring(self, acquire: Callable[..., Any]) -> Callable[..., Any]:
        """Around a run's acquisition of slots: the lease clock at its now; its wait (queue and 423s) kept."""
        signature = inspect.signature(acquire)

        def record(line: Line, before: float, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            bound = signature.bind_partial(*args, **kwargs).arguments
            holder = getattr(bound.get("holder"), "id", None)
            if holder is None:  # ``concurrency(NAME)`` in the flow's own code: the task run it runs in, if any
                from prefect.context import TaskRunContext

                context = TaskRunContext.get()
                holder = context.task_run.id if context is not None else None
            with self._lock:
                waited = max(self._waited_so_far(line) - before, 0.0)
                self.waited.append(Waited(tuple(bound.get("names") or ()), holder, waited))

        @contextlib.contextmanager
        def asking(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[tuple[Line, Callable[[], bool]]]:
            """The caller's line, noted as asking at its instant, and whether the others have reached it; its
            wait kept at the end (a wait that timed out was waited all the same)."""
            line = self.clock.line()
            before = self._waited_so_far(line)
            self._asking(line)
            try:
                yield line, self._others_reached(line, asking=True)
            finally:
                self._asked(line)
                record(line, before, args, kwargs)

        if inspect.iscoroutinefunction(acquire):

            async def aacquire(*args: Any, **kwargs: Any) -> Any:
                with asking(args, kwargs) as (line, reached):
                    while not reached():
                        await asyncio.sleep(0.001)
                    self.move(self.target(line))
                    with self.clock.waiting():
                        return await acquire(*args, **kwargs)

            return aacquire

        def sacquire(*args: Any, **kwargs: Any) -> Any:
            with asking(args, kwargs) as (line, reached):
                while not reached():
                    time.sleep(0.001)
                self.move(self.target(line))
                with self.clock.waiting():
                    return acquire(*args, **kwargs)

        return sacquire

    def _asking(self, line: Line) -> None:
        """``line`` asks for slots at its instant: until a service takes its request, it is not caught up."""
        with self._lock:
            self._queued[line] = None

    def _asked(self, line: Line) -> None:
        with self._lock:
            self._queued.pop(line, None)

    def _waited_so_far(self, line: Line) -> float:
        """What ``line`` has waited: the seconds it skipped, or in real time the wall's."""
        return time.monotonic() if self.clock.real_time else line.offset

    def _holding(self, maintain: Callable[..., Any]) -> Callable[..., Any]:
        """Around holding slots (Prefect renewing their lease meanwhile): at the end, before the renewals stop,
        the others catch up with the holder's virtual now (real time, bounded), as in real time whoever asked
        for a slot meanwhile would have been refused until then."""
        if inspect.isasyncgenfunction(inspect.unwrap(maintain)):

            @contextlib.asynccontextmanager
            async def aholding(*args: Any, **kwargs: Any) -> Any:
                async with maintain(*args, **kwargs):
                    try:
                        yield
                    finally:
                        with self._giving_back() as done:
                            while not done():
                                await asyncio.sleep(0.001)

            return aholding

        @contextlib.contextmanager
        def holding(*args: Any, **kwargs: Any) -> Iterator[None]:
            with maintain(*args, **kwargs):
                try:
                    yield
                finally:
                    with self._giving_back() as done:
                        while not done():
                            time.sleep(0.001)

        return holding

    @contextlib.contextmanager
    def _giving_back(self) -> Iterator[Callable[[], bool]]:
        """The caller gives its slots back at its virtual now once the others have caught up with it: noted, so
        that nobody asks for one past that instant before it has; yields whether to go on (caught up, or the
        bound reached)."""
        line = self.clock.line()
        self._gives(line)
        with self.clock.waiting():
            yield self._others_reached(line)

    def _others_reached(self, line: Line, asking: bool = False) -> Callable[[], bool]:
        """Whether the others have caught up with ``line``'s instant now (or the bound, real time, is reached):
        what it does there (ask for a slot, give one back) then comes after all they did before it; an ask also
        after every give-back due by then."""
        at, until = _Instant(line.offset), time.monotonic() + CATCH_UP_S
        return lambda: (
            time.monotonic() >= until or (self._caught_up(line, at) and not (asking and self._given_before(at.at)))
        )

    def _gives(self, line: Line) -> None:
        """``line`` is about to give its slots back: whoever asks for one later in virtual time waits for that."""
        with self._lock:
            self._giving[line] = line.offset

    def _gave(self, line: Line) -> None:
        with self._lock:
            self._giving.pop(line, None)

    def _releasing(self, release: Callable[..., Any]) -> Callable[..., Any]:
        """Around giving slots back: the lease clock first at the giver's virtual now."""
        if inspect.iscoroutinefunction(release):

            async def arelease(*args: Any, **kwargs: Any) -> Any:
                line = self.clock.line()
                try:
                    self.move(self.target(line))
                    return await release(*args, **kwargs)
                finally:
                    self._gave(line)

            return arelease

        def srelease(*args: Any, **kwargs: Any) -> Any:
            line = self.clock.line()
            try:
                self.move(self.target(line))
                return release(*args, **kwargs)
            finally:
                self._gave(line)

        return srelease

    def _sending(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def sending(service: Any, item: Any) -> Any:
            line = self.clock.line()  # the sender's: its ``_handle`` runs on the service's own loop
            with self._lock:
                if line in self._queued:  # asked through Prefect's acquisition (always, for a run's own)
                    self._queued[line] = service
            future = send(service, item)
            with self._cond:
                self._senders[future] = line
                self._cond.notify_all()
            return future

        return sending

    def _handling(self, handle: Callable[..., Any]) -> Callable[..., Any]:
        async def handling(service: Any, item: Any) -> Any:
            future = item[-1]
            line = await self._sender(future)
            if line is None:
                return await handle(service, item)
            with self._lock:  # queued behind another acquisition: it is served no earlier than that one was
                line.offset = start = max(line.offset, self._answered.get(service, 0.0))
                if line in self._queued:
                    self._queued[line] = None  # served now: it asks on its own line (``_serving``)
                self._serving[service] = (line, future)
            # Its asker waits no more on what the others do: it asks, and waits for slots, on its own line.
            self.clock.stop_waiting(line)
            slept = [0.0]  # its waits for a slot (the asker's line moves on once answered: not read after)
            timeout = item[2] if len(item) > 3 else None  # ``concurrency(timeout_seconds=...)``: on waits, virtual
            token = _WAITER.set((line, slept, timeout))
            try:
                return await handle(service, item)
            finally:
                _WAITER.reset(token)
                self.clock.wait_for(line)
                with self._lock:
                    self._answered[service] = start + slept[0]
                    self._serving.pop(service, None)

        return handling

    async def _sender(self, future: Any) -> Line | None:
        until = time.monotonic() + 1.0
        while True:
            with self._cond:
                line = self._senders.pop(future, None)
            if line is not None or time.monotonic() > until:
                return line
            await asyncio.sleep(0.001)  # ``send`` has queued the item and not yet noted its sender

    async def wait_for_slot(self, seconds: float, real_sleep: Callable[[float], Any]) -> None:
        """The client's wait before asking for a slot again: virtual, on the waiter's line; then the others
        catch up with its end (real time, bounded), and the lease clock moves there."""
        waiter = _WAITER.get()
        if waiter is None or self.clock.real_time:
            await real_sleep(seconds)
            if waiter is not None:  # real time: the lease clock follows the wall
                await _in_a_thread(self.move, self.target(waiter[0]))
            return
        line, slept, timeout = waiter
        seconds = max(seconds, 0.0)
        if timeout is not None and slept[0] + seconds > timeout:  # ``timeout_async``'s scope ends first
            left = max(timeout - slept[0], 0.0)
            await _in_a_thread(self.clock.sleep, left, line)
            slept[0] += left
            raise TimeoutError(f"Scope timed out after {timeout} second(s).")
        # On the clock, as any wait: a flow's deadline on the way fires there.
        await _in_a_thread(self.clock.sleep, seconds, line)
        slept[0] += seconds
        at = _Instant(line.offset)
        until = time.monotonic() + CATCH_UP_S
        while time.monotonic() < until and not (self._caught_up(line, at) and not self._given_before(at.at)):
            await real_sleep(0.001)
        await _in_a_thread(self.move, self.target(line))

    def _task_caught_up(self, line: Line, at: _Instant) -> bool:
        """A task run asking for slots waits behind the acquisition its service serves now, if any; with none
        served, its own is about to be, at its own instant. Any other: as the clock says."""
        if line in self._queued:  # read under the clock's lock; written under ``_lock``: a snapshot
            service = self._queued.get(line)
            serving = self._serving.get(service) if service is not None else None
            if service is None or (serving is not None and serving[0] is line):  # asks now, at its instant
                return line.offset >= at.at
            # Queued behind another's, still unanswered: that one's instant is the one to reach. Once answered, its
            # caller may run ahead of the service's loop: this one is served next, at its own instant or later.
            return serving is not None and not serving[1].done()
        return line.caught_up(at)  # type: ignore[arg-type]

    def _given_before(self, offset: float) -> bool:
        """Whether a holder gives its slots back, at ``offset`` or before, and has not yet: asking now would be
        refused where, at that virtual instant, the slot would have been free."""
        with self._lock:
            return any(at <= offset for at in self._giving.values())

    def _caught_up(self, waiter: Line, at: _Instant) -> bool:
        """Whether every other participant has reached ``at`` or waits on something: every task run of the
        run, and the flow run each runs under (one still calling or submitting task runs would start them at
        its own, earlier, instant; the flow runs above it are blocked in the subflow call, or await it)."""
        with self.clock._lock:
            running = [ln for ln in self.clock._counted if not ln.ended]
            flows = {id(f): f for ln in running if (f := _its_flow_run(ln)) is not None}
            tasks = [ln for ln in running if ln is not waiter]
            return all(self._task_caught_up(ln, at) for ln in tasks) and all(
                f.returned or f.caught_up(at) or _suspended(f.task)  # type: ignore[arg-type]
                for f in flows.values()
            )

    # -- the renewal thread's waits -----------------------------------------------------------------------

    def renewal_wait(self) -> _RenewalWait:
        wait = _RenewalWait(self)
        with self._cond:
            self._renewals = [w for w in self._renewals if w.alive() or w.thread is None]
            self._renewals.append(wait)
        return wait


async def _in_a_thread(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` in a worker thread, in this context (the run's and the task run's), not blocking the
    service's loop meanwhile."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(None, lambda: context.run(call, *args))


def _its_flow_run(line: Line) -> Line | None:
    """The line of the flow run a task run's ``line`` runs under: the nearest forked for a flow run (not
    counted, not a submitted future's), under the run's root."""
    for ancestor in line.chain():
        if not ancestor.counted and ancestor.queued is None and ancestor.parent is not None:
            return ancestor
    return None


def _suspended(task: Any) -> bool:
    """An async flow run's coroutine suspended on what it awaits (its task runs, gathered): it starts nothing."""
    return task is not None and not task.done() and getattr(task, "_fut_waiter", None) is not None


@dataclass(slots=True)
class _Instant:
    """A point on the virtual clock, as ``Line.caught_up`` reads a deadline."""

    at: float


@dataclass(eq=False)
class _RenewalWait:
    """``threading.Event`` for Prefect's lease renewal thread: its timed waits end on the lease clock."""

    slots: Slots = field(repr=False)
    flag: bool = False
    due: float | None = None  # the lease clock's offset at which its current wait ends
    woken: bool = False
    released: bool = False  # the run is over: waits go by real time
    thread: threading.Thread | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return not self.flag and (self.thread is None or self.thread.is_alive())

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        with self.slots._cond:
            self.flag = True
            self.slots._cond.notify_all()

    def clear(self) -> None:
        with self.slots._cond:
            self.flag = False

    def wait(self, timeout: float | None = None) -> bool:
        cond = self.slots._cond
        with cond:
            self.thread = threading.current_thread()
            if timeout is None or self.released:
                cond.wait_for(lambda: self.flag, timeout)
                return self.flag
            self.due, self.woken = self.slots.offset + timeout, False
            cond.notify_all()
            until = time.monotonic() + timeout  # real time still ends it, as Prefect's wait would end
            while not (self.flag or self.woken or self.released) and time.monotonic() < until:
                cond.wait(0.05)
            if self.released and not (self.flag or self.woken):
                cond.wait_for(lambda: self.flag, max(until - time.monotonic(), 0.0))
            self.due, self.woken = None, False
            return self.flag


class _AsyncioShim(types.ModuleType):
    """``asyncio`` as the acquisition services see it: their wait for a slot is ``Slots.wait_for_slot``."""

    def __init__(self, real: types.ModuleType, slots: Slots) -> None:
        super().__init__("asyncio")
        self._real, self._slots = real, slots

    async def sleep(self, seconds: float, result: Any = None) -> Any:
        await self._slots.wait_for_slot(seconds, self._real.sleep)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _ThreadingShim(types.ModuleType):
    """``threading`` as the lease renewal sees it: its stop event waits on the lease clock."""

    def __init__(self, real: types.ModuleType, slots: Slots) -> None:
        super().__init__("threading")
        self._real, self._slots = real, slots

    def Event(self) -> _RenewalWait:  # noqa: N802 (threading's own name)
        return self._slots.renewal_wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def no_limits_forgotten() -> Iterator[None]:
    """Prefect's process-wide cache of tag sets found to have no limits (for 5 s of real time), empty for a run
    and put back after it: a run meets the limits its server has now, and the user's next test those of its own."""
    import cachetools

    with contextlib.ExitStack() as stack:
        replace(stack, "prefect.concurrency.services:_no_limits_cache", cachetools.TTLCache(maxsize=1000, ttl=5.0))
        yield


def limits_after(
    scenario: Scenario, waited: list[Waited], names_of: Callable[[Any], str] = str
) -> dict[str, LimitSlots]:
    """The outcome's ``slots``: per declared limit, what it holds now and each of ``waited`` for it (``names_of``:
    a task run's id -> its name). A killed run's waits died with it: it gives none."""
    limits = scenario.concurrency_limits
    if limits is None:
        return {}
    now = held(scenario)
    sizes = {**limits.tag, **limits.global_}
    out: dict[str, LimitSlots] = {}
    for name, on_server in server_names(scenario).items():
        waits = tuple((names_of(w.holder), round(w.seconds, 6)) for w in waited if on_server in w.names)
        out[name] = LimitSlots(sizes[name], now[name], waits)
    return out
