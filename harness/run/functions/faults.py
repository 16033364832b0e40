"""A run's ``functions:``: each target's schedule of steps, the patches that serve it, and its calls logged.

Each declared target has a schedule as an endpoint has (steps in order,
``times``, ``until`` windows, then chaos, else the last step repeats), drawn
from the scenario's seed. A call of a target, made by the flow's own code
(``callers.the_flows``), takes the next step of the first target declared
for it whose ``where`` matches; it waits the step's latency on the virtual
clock, then raises the step's failure or calls through. A ``sqlite_busy``
first spends the connection's busy ``timeout``, as SQLite waits that long
for the lock before it gives up. Every call is logged with what served it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import inspect
import random
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.run.clock import Clock
from harness.run.functions import files, sqlite
from harness.run.functions.callers import the_flows
from harness.run.hooks import timeout_error
from harness.run.schedules import Call, Schedule
from harness.run.states import Recorder
from harness.scenario.kinds import FILE_KINDS, SQLITE_KINDS
from harness.scenario.model import FunctionStep, FunctionTarget, RaiseType, Scenario
from harness.scenario.resolve import resolve_exception, resolve_target, tasks_of


@dataclass(frozen=True, slots=True)
class Served:
    """What a call of a target gets: its step, the latency drawn, and where it was logged from."""

    target: FunctionTarget
    step: FunctionStep
    latency: float
    at: float


class Functions:
    """The function targets of one run (see the module's docstring)."""

    def __init__(
        self, scenario: Scenario, clock: Clock, recorder: Recorder, log: Callable[[Call], None], flow: Any = None
    ) -> None:
        self.scenario, self.clock, self.recorder, self.log = scenario, clock, recorder, log
        self.flow = flow
        self.schedules = [
            Schedule(t, random.Random(f"{scenario.seed}:functions:{i}"), clock)
            for i, t in enumerate(scenario.functions)
        ]
        self._lock = threading.Lock()
        self._near = scenario.path.parent

    # -- serving -----------------------------------------------------------------------------------------

    def take(self, call: str, path: str | None) -> Served | None:
        """The step for a call of ``call`` (on ``path``), from the first target declared for it that matches."""
        with self._lock:
            for schedule in self.schedules:
                target: FunctionTarget = schedule.endpoint
                if target.call == call and _matches(target.where, path):
                    step: FunctionStep = schedule.next()  # type: ignore[assignment]
                    latency = step.latency.draw(schedule.rng) if step.latency else 0.0
                    return Served(target, step, latency, self.clock.now())
        return None

    def waited(self, served: Served, busy_timeout: float = 0.0) -> float:
        """The seconds a call waits before its step acts: its latency, and a busy database's timeout."""
        return served.latency + (busy_timeout if served.step.kind == "sqlite_busy" else 0.0)

    def _cut(self, seconds: float) -> tuple[float, BaseException | None, str]:
        """What a wait of ``seconds`` in the current task run's attempt comes to: cut at its ``timeout_seconds``
        (what is left of it, as an endpoint's latency is), then Prefect's own timeout raised, logged so."""
        record = self.recorder.current()
        if record is None:
            return seconds, None, ""
        timeout: float | None = getattr(record.task, "timeout_seconds", None)
        budget = None if timeout is None else max(timeout - record.attempt_waited, 0.0)
        if timeout is None or budget is None or seconds < budget:
            record.attempt_waited += seconds
            return seconds, None, ""
        record.attempt_waited += budget
        return budget, timeout_error(timeout), f"task timeout_seconds={timeout:g} (waited {seconds:g} s)"

    def serve(self, served: Served, path: str | None, source: str | None = None, busy: float = 0.0) -> Any:
        """A call's wait on the virtual clock, then the call logged; returns what it raises (None: call through).
        A wait past the task's timeout raises Prefect's timeout there."""
        waited, timed_out, cut = self._cut(self.waited(served, busy))
        if waited:
            self.clock.sleep(waited)
        return self._served(served, path, source, timed_out, cut)

    async def aserve(self, served: Served, path: str | None) -> Any:
        waited, timed_out, cut = self._cut(self.waited(served))
        if waited:
            await self.clock.asleep(waited)
        return self._served(served, path, None, timed_out, cut)

    def _served(
        self, served: Served, path: str | None, source: str | None, timed_out: BaseException | None, cut: str
    ) -> Any:
        step, record = served.step, self.recorder.current()
        self.log(
            Call(
                served.at,
                "CALL",
                path or served.target.call,
                served.target.key,
                cut or step.describe(),
                None,
                (),
                task_run=record.id if record is not None else None,
                task=record.name if record is not None else None,
                transport="function",
            )
        )
        if timed_out is not None:
            raise timed_out
        return self._exception(step, served.target.call, path, source)

    def _exception(self, step: FunctionStep, call: str, path: str | None, source: str | None = None) -> Any:
        """What ``step`` raises, as the real failure raises it: an ``open`` or a replace names its file(s),
        a write does not."""
        raised = step.raise_
        if raised is None:
            return None
        if isinstance(raised, RaiseType):
            cls = resolve_exception(raised.type, self._near)
            return cls(raised.message) if raised.message else cls()
        if raised in SQLITE_KINDS:
            return SQLITE_KINDS[raised].exception()
        kind = FILE_KINDS[raised]
        if call == "file:replace":
            return kind.exception(source, path)
        return kind.exception(path if call == "file:open_write" else None)

    def _sqlite(self, call: str, path: str, timeout: float) -> BaseException | None:
        served = self.take(call, path)
        return self.serve(served, path, busy=timeout) if served is not None else None

    def _file(self, call: str, path: str, data: Any) -> Any:
        served = self.take(call, path)
        if served is None:
            return None
        error = self.serve(served, path, data if call == "file:replace" else None)
        if error is not None and served.step.kind == "partial_write":
            return ("partial", error)
        return error

    # -- installing --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The patches that serve the targets, for the run; every one undone after it."""
        calls = {t.call for t in self.scenario.functions}
        modules = self._flows_modules()
        with contextlib.ExitStack() as stack:
            if calls & set(sqlite.TARGETS):
                stack.enter_context(sqlite.faulted(self._sqlite, modules))
            if calls & set(files.TARGETS):
                stack.enter_context(files.faulted(self._file, "file:write" in calls, modules))
            for call in sorted(calls - set(sqlite.TARGETS) - set(files.TARGETS)):
                self._patch(stack, call, modules)
            yield

    def _flows_modules(self) -> list[ModuleType]:
        """The modules of the flow's code: its own, and those of the tasks it can call."""
        if self.flow is None:
            return []
        names = [self.flow.fn.__module__] + [t.fn.__module__ for t in tasks_of(self.flow)]
        return [m for m in dict.fromkeys(sys.modules.get(n) for n in names) if m is not None]

    def _patch(self, stack: contextlib.ExitStack, call: str, modules: list[ModuleType]) -> None:
        """``call`` (``package.module:function`` or ``:Class.method``) replaced where it is defined and where the
        flow's code imported it by name, by a function that serves its schedule first."""
        from unittest import mock

        owner, name, fn = resolve_target(call, self._near)
        static = inspect.getattr_static(owner, name)
        real = static.__func__ if isinstance(static, staticmethod | classmethod) else fn
        if inspect.isclass(owner) and not isinstance(static, staticmethod | classmethod):
            real = static  # the plain function: bound again on each instance
        wrapper = self._serving(call, real)
        value: Any = type(static)(wrapper) if isinstance(static, staticmethod | classmethod) else wrapper
        stack.enter_context(mock.patch.object(owner, name, value))
        for module in modules:
            if module is not owner:
                for attr, obj in list(vars(module).items()):
                    if obj is fn or obj is real:
                        stack.enter_context(mock.patch.object(module, attr, wrapper))

    def _serving(self, call: str, real: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(real):

            async def aserve(*args: Any, **kwargs: Any) -> Any:
                served = self.take(call, None) if the_flows() else None
                error = await self.aserve(served, None) if served is not None else None
                if error is not None:
                    raise error
                return await real(*args, **kwargs)

            return functools.wraps(real)(aserve)

        def serve(*args: Any, **kwargs: Any) -> Any:
            served = self.take(call, None) if the_flows() else None
            error = self.serve(served, None) if served is not None else None
            if error is not None:
                raise error
            return real(*args, **kwargs)

        return functools.wraps(real)(serve)


def _matches(where: dict[str, str], path: str | None) -> bool:
    pattern = where.get("path")
    if pattern is None:
        return True
    if path is None:
        return False
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(Path(path).name, pattern)
