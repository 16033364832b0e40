"""File calls a scenario can fault: ``file:open_write``, ``file:write`` and ``file:replace``.

While ``faulted`` is in force, ``open`` (``builtins.open`` and ``io.open``,
which ``Path.open``, ``Path.write_text`` and ``Path.write_bytes`` call) asks
``decide`` before it opens a file for writing (modes ``w``, ``a``, ``x``,
``+``); a file so opened is handed back behind a thin proxy whose ``write``
and ``writelines`` ask before each write. ``os.replace`` (which
``Path.replace`` calls) asks before it replaces. ``where``'s path is the
file's (for a replace: its destination, the file replaced).
Only the flow's own calls are asked about (``callers.the_flows``): Prefect's
result storage and the harness's own files are never faulted.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from harness.run.functions.callers import rebound, the_flows

# (target, the file's path, bytes or text to write or None) -> what to do: None (call through), an exception
# to raise, or ("partial", exception): write half of it, then raise.
Decide = Callable[[str, str, Any], Any]

TARGETS = ("file:open_write", "file:write", "file:replace")
_ACTIVE: list[Decide | None] = [None]  # the run's ``decide`` while one runs: files opened earlier ask it too


def _writes(mode: str) -> bool:
    return any(c in mode for c in "wax+")


class FaultedFile:
    """A file opened for writing by the flow: each write asks ``decide`` first; the rest is the file's."""

    def __init__(self, file: Any, path: str, decide: Decide) -> None:
        self._file, self._path, self._decide = file, path, decide

    def write(self, data: Any) -> Any:
        answer = self._decide("file:write", self._path, data)
        if isinstance(answer, tuple):  # a partial write: half of it reaches the file, then the disk is full
            _, error = answer
            self._file.write(data[: len(data) // 2])
            self._file.flush()
            raise error
        if answer is not None:
            raise answer
        return self._file.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __enter__(self) -> FaultedFile:
        self._file.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._file.__exit__(*exc)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._file)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


@contextlib.contextmanager
def faulted(decide: Decide, wrap_writes: bool, modules: Iterable[ModuleType] = ()) -> Iterator[None]:
    """``open`` and ``os.replace`` asking ``decide`` until the block ends, also where ``modules`` imported them
    by name (``wrap_writes``: file objects opened for writing ask before each write too). A file opened
    meanwhile asks whichever run is under way when it is written to, and nothing between runs."""
    real_open, real_replace = io.open, os.replace

    def asking(call: str, path: str, data: Any) -> Any:
        current = _ACTIVE[0]  # the run's now: a file opened in an earlier run asks the one under way
        return current(call, path, data) if current is not None else None

    installed, decide = decide, asking

    def open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:  # noqa: A001 (open's own name)
        if isinstance(file, int) or not _writes(mode) or not the_flows():
            return real_open(file, mode, *args, **kwargs)
        path = os.fsdecode(file)
        error = decide("file:open_write", path, None)
        if error is not None:
            raise error
        opened = real_open(file, mode, *args, **kwargs)
        return FaultedFile(opened, path, decide) if wrap_writes else opened

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if the_flows():
            error = decide("file:replace", os.fsdecode(dst), os.fsdecode(src))
            if error is not None:
                raise error
        real_replace(src, dst, *args, **kwargs)

    from unittest import mock

    with contextlib.ExitStack() as stack:
        stack.callback(_ACTIVE.__setitem__, 0, _ACTIVE[0])
        _ACTIVE[0] = installed
        for owner in (builtins, io):
            stack.enter_context(mock.patch.object(owner, "open", open))
        stack.enter_context(mock.patch.object(os, "replace", replace))
        rebound(stack, modules, real_open, open)
        rebound(stack, modules, real_replace, replace)
        yield
