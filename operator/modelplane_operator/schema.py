"""Small builders for structural OpenAPI v3 schemas, and the defaulting the API server does with them.

The CRDs are written with these (see crd.py) so that every field carries a description and the schema stays
readable; `apply_defaults` lets pure code see a spec exactly as the API server would store it.
"""

from __future__ import annotations

import copy
from typing import Any


def _with(schema: dict, description: str, rules=None, **extra) -> dict:
    schema["description"] = description
    schema.update({k: v for k, v in extra.items() if v is not None})
    if rules:
        schema["x-kubernetes-validations"] = [
            {"rule": rule, "message": message, **({"fieldPath": path} if path else {})}
            for rule, message, *rest in rules
            for path in [rest[0] if rest else None]
        ]
    return schema


def string(description: str, *, rules=None, **extra) -> dict:
    return _with({"type": "string"}, description, rules, **extra)


def integer(description: str, *, rules=None, **extra) -> dict:
    return _with({"type": "integer", **({"format": "int32"} if "format" not in extra else {})}, description, rules,
                 **extra)


def number(description: str, **extra) -> dict:
    return _with({"type": "number"}, description, **extra)


def boolean(description: str, **extra) -> dict:
    return _with({"type": "boolean"}, description, **extra)


def quantity(description: str) -> dict:
    return _with({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True,
                  "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"},
                 description)


def string_map(description: str, **extra) -> dict:
    return _with({"type": "object", "additionalProperties": {"type": "string"}}, description, **extra)


def array(description: str, items: dict, *, rules=None, **extra) -> dict:
    return _with({"type": "array", "items": items}, description, rules, **extra)


def obj(description: str, properties: dict | None = None, *, required=(), rules=None, **extra) -> dict:
    schema: dict[str, Any] = {"type": "object"}
    if properties is not None:
        schema["properties"] = properties
    if required:
        schema["required"] = list(required)
    return _with(schema, description, rules, **extra)


def free_form(description: str) -> dict:
    """An object kept as given (for Kubernetes types such as affinity whose full schema adds nothing here)."""
    return obj(description, **{"x-kubernetes-preserve-unknown-fields": True})


def apply_defaults(schema: dict, value: Any) -> Any:
    """Return `value` with the schema's defaults filled in, as the API server does on create and read."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        if isinstance(value, list) and "items" in schema:
            return [apply_defaults(schema["items"], v) for v in value]
        return value
    out = copy.copy(value)
    for name, prop in schema.get("properties", {}).items():
        if name not in out and "default" in prop:
            out[name] = copy.deepcopy(prop["default"])
        if name in out:
            out[name] = apply_defaults(prop, out[name])
    return out
