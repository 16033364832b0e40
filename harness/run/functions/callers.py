"""Whose call it is (only the flow's own calls to a function target are faulted), and the names the flow's code
calls a target by."""

from __future__ import annotations

import contextlib
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

NOT_THE_FLOWS = ("prefect", "_pytest", "pytest", "pluggy", "harness")
THROUGH = ("anyio", "fsspec")  # libraries Prefect and flows both write through: whose call it is lies beyond
_STDLIB = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
_HERE = str(Path(__file__).parent)


def the_flows() -> bool:
    """Whether the call being made comes from the flow's code (or a library it called), not from Prefect's,
    the harness's or the test runner's: the nearest caller outside the standard library (and anyio and fsspec,
    which both write through) says. A call made in a worker thread with none of them on its stack (what
    ``anyio.to_thread`` runs) is not the flow's."""
    frame = sys._getframe(2)  # the_flows <- the patched function <- its caller
    while frame is not None:
        filename = frame.f_code.co_filename
        module = str(frame.f_globals.get("__name__", ""))
        stdlib = filename.startswith(_STDLIB) and "site-packages" not in filename
        if filename.startswith(_HERE) or stdlib or module.partition(".")[0] in THROUGH:
            frame = frame.f_back  # type: ignore[assignment]
            continue
        if module.startswith("harness.flows"):
            return True
        return module.partition(".")[0] not in NOT_THE_FLOWS
    return False


def rebound(stack: contextlib.ExitStack, modules: Iterable[ModuleType], real: Any, value: Any) -> None:
    """``value`` in place of ``real`` under every name ``modules`` hold it by (``from sqlite3 import connect``)."""
    from unittest import mock

    for module in modules:
        for name, obj in list(vars(module).items()):
            if obj is real:
                stack.enter_context(mock.patch.object(module, name, value))
