"""Writing scenarios: documents as the scenario library writes them, for the tools that write files.

``harness explore`` writes the minimal schedule it finds and ``harness
record`` a live run; both build a plain document (dicts, lists, scalars) and
``dump`` it. The loader reads it back, so what one writes the other loads.
"""

from __future__ import annotations

from typing import Any

import yaml

from harness.scenario.model import Invariant, Step


def plain(value: Any) -> Any:
    """A value as YAML would write it: tuples become lists, mappings plain dicts."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def step_yaml(step: Step) -> dict[str, Any]:
    """A ``Step`` as a scenario writes it (``times`` dropped: the healthy answer repeats for ever)."""
    out: dict[str, Any] = {}
    for key in ("fault", "malformed", "status"):
        if getattr(step, key) is not None:
            out[key] = getattr(step, key)
    if step.headers:
        out["headers"] = dict(step.headers)
    for key in ("json", "text", "body_base64"):
        if step.has(key):
            out[key] = plain(step.json_) if key == "json" else getattr(step, key)
    if step.latency is not None:
        lat = step.latency
        out["latency"] = (
            lat.a
            if lat.kind == "fixed"
            else {"uniform": [lat.a, lat.b]}
            if lat.kind == "uniform"
            else {"lognormal": {"median": lat.a, "sigma": lat.b}}
        )
    return out


def invariant_yaml(invariant: Invariant) -> Any:
    return {"bounded_calls": invariant.bound} if invariant.kind == "bounded_calls" else invariant.kind


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # write shared bodies out in full, never as &id001 anchors

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # indent lists under their key, as the scenario library does

    def write_plain(self, text: str, split: bool = True) -> None:
        super().write_plain(text, split=False)  # a request line stays on one line; only prose folds


class _Prose(str):
    """A string written folded (``>-``), as the library writes descriptions."""


_Dumper.add_representer(_Prose, lambda d, text: d.represent_scalar("tag:yaml.org,2002:str", text, style=">"))


def dump(document: dict[str, Any]) -> str:
    """A scenario document as YAML: block style, with steps and small mappings on one line."""
    if "description" in document:
        document = {**document, "description": _Prose(document["description"])}
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
