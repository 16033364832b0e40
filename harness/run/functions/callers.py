"""Whose call it is: only the flow's own calls to a function target are faulted."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

NOT_THE_FLOWS = ("prefect", "anyio", "fsspec", "_pytest", "pytest", "pluggy", "harness")
_STDLIB = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
_HERE = str(Path(__file__).parent)


def the_flows() -> bool:
    """Whether the call being made comes from the flow's code (or a library it called), not from Prefect's,
    the harness's or the test runner's."""
    frame = sys._getframe(2)  # the_flows <- the patched function <- its caller
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_HERE) or (filename.startswith(_STDLIB) and "site-packages" not in filename):
            frame = frame.f_back  # type: ignore[assignment]
            continue
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("harness.flows"):
            return True
        return module.partition(".")[0] not in NOT_THE_FLOWS
    return False
