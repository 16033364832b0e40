"""JSON Schemas of the scenario language, generated from the models, for editors (``harness schema``).

The models are the one source: each shorthand a ``BeforeValidator`` reads
(``flow: Completed``, latency as a number, ``request: "METHOD URL"``, a
preset's name alone under ``strategies:``, ...) declares the forms it accepts
with ``json_schema_input_type``, so a document the loader accepts validates.
The schema checks keys, types, enums and ranges; what it cannot see stays the
loader's: rules across keys (one body per step, ``runs: 0`` with a state,
``low <= high``), regular expressions and base64 that do not parse, and names
that must import or exist (flows, tasks, parameters, ``module:function``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from harness.scenario.model import UNSET, Scenario
from harness.scenario.strategy import StrategiesFile

DRAFT = "https://json-schema.org/draft/2020-12/schema"


class _Generator(GenerateJsonSchema):
    """Pydantic's generator, less per-field titles (noise in an editor) and defaults JSON cannot hold."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        default = self.get_default_value(schema)
        if default is UNSET or isinstance(default, BaseModel):  # an unset `json`/`result`; `expect: Expect()`
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def _schema(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    body = model.model_json_schema(mode="validation", schema_generator=_Generator)
    return {
        "$schema": DRAFT,
        "title": title,
        "description": description,
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }


def scenario_schema() -> dict[str, Any]:
    """The JSON Schema of one scenario document (each ``---`` document of a scenario file)."""
    return _schema(
        Scenario,
        "harness scenario",
        "One scenario of prefect-fault-harness: a flow, the HTTP endpoints it may call with the faults they "
        "serve, and what must hold after the run. A file may hold several, separated by '---'.",
    )


def strategies_schema() -> dict[str, Any]:
    """The JSON Schema of a strategies file (``harness compare --strategies-file``)."""
    return _schema(
        StrategiesFile,
        "harness strategies file",
        "Named fault-tolerance strategies for `harness compare --strategies-file`: Prefect task and flow "
        "options set on a flow's tasks for one run.",
    )


def dumps(schema: dict[str, Any]) -> str:
    """The schema as the file ``harness schema`` writes: indented JSON, ending in a newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
