"""The two flows of the original study, ported to Prefect 3 and httpx.

They are the built-in targets: a scenario names them as ``cfpb_etl`` and
``github_stars``. Any other flow is named by import path (``pkg.module:flow``).
"""

from __future__ import annotations

BUILTIN_FLOWS: dict[str, str] = {
    "cfpb_etl": "harness.flows.cfpb:cfpb_etl",
    "github_stars": "harness.flows.github:github_stars",
}
