"""The user's checks of the process: its environment and trust store are what a plain process would have."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

import certifi
from prefect.settings import get_current_settings

from conftest import BASELINE, WATCHED

VIEW = """
import json, os, ssl, certifi
print(json.dumps({
    "environ": {k: v for k, v in os.environ.items() if k.startswith(WATCHED) or k.lower().endswith("_proxy")},
    "certifi": certifi.where(),
    "verify paths": list(ssl.get_default_verify_paths()),
    "default CAs": ssl.create_default_context().cert_store_stats(),
}))
"""


def _view(env: dict[str, str] | None) -> dict[str, object]:
    """What a subprocess sees: with this process's environment (None), or with ``env`` on top of a bare one."""
    code = f"WATCHED = {WATCHED!r}\n{VIEW}"
    if env is not None:
        env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, **env}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    view: dict[str, object] = json.loads(result.stdout)
    return view


def test_my_environment_is_as_it_was_before_any_test() -> None:
    now = {k: v for k, v in os.environ.items() if k.startswith(WATCHED) or k.lower().endswith("_proxy")}
    assert now == BASELINE


def test_a_subprocess_inherits_what_a_plain_one_would() -> None:
    """A subprocess of this process sees the same environment and trust store as one started with the baseline."""
    assert _view(None) == _view(BASELINE)


def test_this_process_trusts_what_a_plain_one_trusts() -> None:
    plain = _view(BASELINE)
    assert certifi.where() == plain["certifi"]
    assert list(ssl.get_default_verify_paths()) == plain["verify paths"]
    assert ssl.create_default_context().cert_store_stats() == plain["default CAs"]


def test_prefect_home_is_mine() -> None:
    """Prefect's settings name the home this environment names (or Prefect's default), not a test harness's."""
    expected = BASELINE.get("PREFECT_HOME", os.path.expanduser("~/.prefect"))
    assert str(get_current_settings().home) == os.path.expanduser(expected)
