"""Fault-tolerance strategies ("policies"): named sets of real Prefect task and flow options.

The documented import path for strategies and for the retry conditions a
user copies into production code::

    from harness.policies import retry_on_transient

    @task(retries=3, retry_condition_fn=retry_on_transient)

- ``conditions``: the copyable retry conditions and the Retry-After rules.
- ``apply``: a strategy's options set on a flow's tasks for one run.
- The strategy model, the presets and the strategies-file loader belong to
  the scenario language (``harness.scenario``) and are re-exported here.
"""

from __future__ import annotations

from harness.policies.apply import TASK_OPTIONS, CallLog, applied, make_condition
from harness.policies.conditions import (
    MAX_HONOURED_WAIT,
    can_succeed_on_retry,
    honouring_retry_after,
    is_rate_limited,
    is_transient_status,
    retry_after_seconds,
    retry_on_transient,
    retry_on_transient_honouring_retry_after,
    wait_for_retry_after,
)
from harness.scenario.loader import load_policies
from harness.scenario.strategy import PRESETS, Exponential, Policy, resolve

__all__ = [
    "MAX_HONOURED_WAIT",
    "PRESETS",
    "TASK_OPTIONS",
    "CallLog",
    "Exponential",
    "Policy",
    "applied",
    "can_succeed_on_retry",
    "honouring_retry_after",
    "is_rate_limited",
    "is_transient_status",
    "load_policies",
    "make_condition",
    "resolve",
    "retry_after_seconds",
    "retry_on_transient",
    "retry_on_transient_honouring_retry_after",
    "wait_for_retry_after",
]
