"""The JSON Schema of a suite file, from the same pydantic models that validate it.

Editors that speak JSON Schema (VS Code's YAML extension, any yaml-language-server client) read
it from the `# yaml-language-server: $schema=suite.schema.json` line at the top of a suite and
complete keys and flag misspelt ones while typing. The models forbid unknown keys, so every
object here has `additionalProperties: false`. A few keys are checked by validators rather than
by their declared type (a model's `training:` overrides are a plain mapping, checked against the
training block); the schema gives editors those checks too.
"""
from __future__ import annotations

import json
from typing import Any

SCHEMA_FILE = "suite.schema.json"  # beside the shipped suites
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# mappings a validator checks against another block: (model, field) -> that block's model
OVERRIDES = {("ModelConfig", "training"): "TrainingConfig",
             ("ModelConfig", "preprocess"): "PreprocessConfig"}


def suite_json_schema() -> dict[str, Any]:
    from mribench.config.schema import MODEL_EXPLAIN_KEYS, Suite

    schema = Suite.model_json_schema()
    defs = schema["$defs"]
    _factory_defaults(Suite, schema, defs)
    for (model, field), target in OVERRIDES.items():
        prop = defs[model]["properties"][field]
        defs[model]["properties"][field] = {"$ref": f"#/$defs/{target}", "default": {},
                                            "description": prop.get("description", "")}
    explain = defs["ModelConfig"]["properties"]["explain"]
    defs["ModelConfig"]["properties"]["explain"] = {
        "type": "object", "additionalProperties": False,
        "properties": {k: defs["ExplainConfig"]["properties"][k] for k in MODEL_EXPLAIN_KEYS},
        "description": explain.get("description", "")}
    _shorthands(schema)
    return {"$schema": DIALECT, **schema}


def _factory_defaults(root, schema: dict[str, Any], defs: dict[str, Any]) -> None:
    """pydantic leaves out the defaults made by a default_factory (`[]`, `{}`); editors and the
    reference show them too."""
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined, to_jsonable_python

    seen: set[type] = set()

    def visit(cls: type[BaseModel]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        node = schema if cls is root else defs.get(cls.__name__)
        for name, field in cls.model_fields.items():
            prop = (node or {}).get("properties", {}).get(field.alias or name)
            if prop is not None and "default" not in prop and field.default_factory is not None \
                    and field.default is PydanticUndefined and not field.default_factory_takes_validated_data:
                prop["default"] = to_jsonable_python(field.default_factory())
            for sub in _models_in(field.annotation):
                visit(sub)

    visit(root)


def _models_in(annotation: Any) -> list[type]:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _shorthands(schema: dict[str, Any]) -> None:
    """The shapes `mode="before"` validators accept besides the declared one."""
    props, defs = schema["properties"], schema["$defs"]
    # `- frozen` stands for `- {name: frozen}`
    name = {k: v for k, v in defs["StrategyConfig"]["properties"]["name"].items() if k != "title"}
    props["strategies"]["items"] = {"anyOf": [props["strategies"]["items"], name]}


def render() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(suite_json_schema(), indent=2, ensure_ascii=False) + "\n"
