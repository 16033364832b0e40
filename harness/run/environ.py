"""Environment variables changed for a block and put back exactly as they were, on every path."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping


@contextlib.contextmanager
def environ(changes: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (``None`` unsets a variable) while the block runs."""
    saved = {key: os.environ.get(key) for key in changes}
    try:
        _apply(changes)
        yield
    finally:
        _apply(saved)


def _apply(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def private_prefect_home() -> Callable[[], None] | None:
    """Point PREFECT_HOME at a temporary folder until the returned undo runs (or the process exits).

    For a harness command, which owns its process: loading flows imports Prefect,
    which makes its home and reads its profiles there; the user's stay untouched.
    Scenario runs set their session's own home. None when PREFECT_HOME is already set.
    """
    if "PREFECT_HOME" in os.environ:
        return None
    home = tempfile.mkdtemp(prefix="harness-home-")
    os.environ["PREFECT_HOME"] = home

    def undo() -> None:
        atexit.unregister(undo)
        os.environ.pop("PREFECT_HOME", None)
        shutil.rmtree(home, ignore_errors=True)

    atexit.register(undo)  # a second Ctrl-C may cut a close short
    return undo
