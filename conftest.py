"""Project-wide pytest configuration: Hypothesis profiles.

The harness's pytest plugin is registered once, by the ``pytest11`` entry
point in pyproject.toml; registering it here too would fail as a duplicate.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
