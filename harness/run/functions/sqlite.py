"""SQLite calls a scenario can fault: ``sqlite3:connect``, ``sqlite3:execute`` and ``sqlite3:commit``.

``sqlite3.Connection`` and ``Cursor`` are C types whose methods cannot be
patched. While ``faulted`` is in force, ``sqlite3.connect`` (and
``sqlite3.dbapi2.connect``, the same function under its other name) connects
through a subclass of the factory the caller asked for, so ``isinstance``
still holds; the subclass asks ``decide`` before each call of a target and
raises what it says, or calls through. ``execute`` covers ``execute``,
``executemany`` and ``executescript``, on the connection and on its cursors;
``commit`` covers ``commit`` and the commit ``with conn:`` makes on exit
(in C, which no override of ``commit`` sees: ``__exit__`` is overridden
too). A target's ``where`` is the database's path as the flow gave it;
``decide`` is also told the connection's busy ``timeout``, which a real
SQLITE_BUSY spends waiting before it is raised.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from harness.run.functions.callers import rebound, the_flows

# (target, the database's path, the connection's busy timeout) -> an exception to raise instead of calling
# through, or None
Decide = Callable[[str, str, float], BaseException | None]

TARGETS = ("sqlite3:connect", "sqlite3:execute", "sqlite3:commit")
_ACTIVE: list[Decide | None] = [None]  # the run's ``decide`` while one runs: connections made earlier ask it too


def _asked(decide: Decide, target: str, path: str, timeout: float) -> None:
    exc = decide(target, path, timeout)
    if exc is not None:
        raise exc


def _cursor_class(base: type[sqlite3.Cursor], decide: Decide, path: str, timeout: float) -> type[sqlite3.Cursor]:
    class FaultedCursor(base):  # type: ignore[valid-type,misc]
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            _asked(decide, "sqlite3:execute", path, timeout)
            return super().execute(*args, **kwargs)

        def executemany(self, *args: Any, **kwargs: Any) -> Any:
            _asked(decide, "sqlite3:execute", path, timeout)
            return super().executemany(*args, **kwargs)

        def executescript(self, *args: Any, **kwargs: Any) -> Any:
            _asked(decide, "sqlite3:execute", path, timeout)
            return super().executescript(*args, **kwargs)

    return FaultedCursor


def _connection_class(
    base: type[sqlite3.Connection], decide: Decide, path: str, timeout: float
) -> type[sqlite3.Connection]:
    class FaultedConnection(base):  # type: ignore[valid-type,misc]
        def cursor(self, factory: Any = sqlite3.Cursor) -> Any:
            return super().cursor(_cursor_class(factory, decide, path, timeout))

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            return self.cursor().execute(*args, **kwargs)  # as the C method does: a new cursor's

        def executemany(self, *args: Any, **kwargs: Any) -> Any:
            return self.cursor().executemany(*args, **kwargs)

        def executescript(self, *args: Any, **kwargs: Any) -> Any:
            return self.cursor().executescript(*args, **kwargs)

        def commit(self) -> None:
            if self.in_transaction:  # with none open, sqlite3 sends no COMMIT: nothing could fail
                _asked(decide, "sqlite3:commit", path, timeout)
            super().commit()

        def __exit__(self, kind: Any, value: Any, traceback: Any) -> Any:
            if kind is None and self.in_transaction:  # ``with conn:`` commits: a faulted commit rolls back
                try:
                    _asked(decide, "sqlite3:commit", path, timeout)
                except BaseException:
                    self.rollback()
                    raise
            return super().__exit__(kind, value, traceback)

    return FaultedConnection


@contextlib.contextmanager
def faulted(decide: Decide, modules: Iterable[ModuleType] = ()) -> Iterator[None]:
    """``sqlite3.connect`` connecting through the faulting subclass until the block ends (also where
    ``modules`` imported it by name). A connection made meanwhile asks whichever run is under way when it is
    used (the next run of a history goes on with its schedules), and nothing between runs."""
    real = sqlite3.connect

    def asking(target: str, path: str, timeout: float) -> BaseException | None:
        current = _ACTIVE[0]  # the run's now: a connection made in an earlier run asks the one under way
        return current(target, path, timeout) if current is not None else None

    installed, decide = decide, asking

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if not the_flows():  # Prefect's, the harness's: connected as asked
            return real(database, *args, **kwargs)  # type: ignore[no-any-return]
        path = str(database)
        timeout = float(args[0] if args else kwargs.get("timeout", 5.0))  # how long it waits on a lock
        _asked(decide, "sqlite3:connect", path, timeout)
        if len(args) >= 5:  # connect(database, timeout, detect_types, isolation_level, check_same_thread, factory)
            kwargs["factory"], args = args[4], (*args[:4], *args[5:])
        factory = kwargs.pop("factory", sqlite3.Connection)
        return real(database, *args, factory=_connection_class(factory, decide, path, timeout), **kwargs)

    with contextlib.ExitStack() as stack:
        stack.callback(_ACTIVE.__setitem__, 0, _ACTIVE[0])
        _ACTIVE[0] = installed
        for owner in {sqlite3, sqlite3.dbapi2}:
            stack.enter_context(_patched(owner, "connect", connect))
        rebound(stack, modules, real, connect)
        yield


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    from unittest import mock

    with mock.patch.object(owner, name, value):
        yield
