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


# Kubernetes' name formats (k8s.io/apimachinery/pkg/util/validation), written without backslashes or quotes so that
# the same text serves as an OpenAPI pattern and inside a CEL string literal.
_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = f"{_LABEL}([.]{_LABEL})*"
_NAME_PART = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"  # at most 63 characters
DNS_SUBDOMAIN = f"^{_SUBDOMAIN}$"  # object names (Secret, PriorityClass, ServiceAccount...): at most 253 characters
DNS_LABEL_ANY = f"^{_LABEL}$"  # namespace names: at most 63 characters
LABEL_VALUE = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"  # at most 63 characters
QUALIFIED_NAME = f"^({_SUBDOMAIN}/)?{_NAME_PART}$"  # label keys, taint keys, topology keys
QUALIFIED_BODY = f"({_SUBDOMAIN}/)?{_NAME_PART}"
_PREFIX_AT_MOST_253 = "^([^/]{0,253}/)?[^/]*$"  # a qualified name's prefix is at most 253 characters
# An extended resource (vendor.example/gpu): IsExtendedResourceName checks "requests." + name as a qualified name, so
# the domain is at most 244 characters; a name in the kubernetes.io domain is not one.
EXTENDED_RESOURCE = f"^{_SUBDOMAIN}/{_NAME_PART}$"
CONFIG_KEY = "^[.]?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"  # Secret and ConfigMap keys: not '.', '..' or '..'-prefixed
ENV_NAME = "^([-_a-zA-Z]|[.][-_a-zA-Z0-9])[-._a-zA-Z0-9]*$"  # IsEnvVarName, without '.', '..' or a '..' prefix


def optional(pattern: str) -> str:
    """`pattern` (^...$) or the empty string."""
    return f"^({pattern[1:-1]})?$"


def qualified_name(expr: str) -> str:
    """CEL: `expr` (a string) is a qualified name, as Kubernetes requires of label and taint keys."""
    return f"{expr}.matches('{QUALIFIED_NAME}') && {expr}.matches('{_PREFIX_AT_MOST_253}')"


def extended_resource(expr: str) -> str:
    """CEL: `expr` is an extended resource name (a domain outside kubernetes.io, '/', a name)."""
    return (f"{expr}.matches('{EXTENDED_RESOURCE}') && {expr}.matches('^[^/]{{1,244}}/') && "
            f"!{expr}.startsWith('requests.') && !{expr}.contains('kubernetes.io/')")


def string(description: str, *, rules=None, **extra) -> dict:
    return _with({"type": "string"}, description, rules, **extra)


def integer(description: str, *, rules=None, **extra) -> dict:
    return _with({"type": "integer", **({"format": "int32"} if "format" not in extra else {})}, description, rules,
                 **extra)


def number(description: str, **extra) -> dict:
    return _with({"type": "number"}, description, **extra)


def boolean(description: str, **extra) -> dict:
    return _with({"type": "boolean"}, description, **extra)


def quantity(description: str, **extra) -> dict:
    """A resource quantity that is not negative (Kubernetes refuses a negative one in a container's resources or an
    emptyDir's sizeLimit): a whole number, or a string of digits with an optional suffix or exponent."""
    return _with({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True,
                  "minimum": 0, "maxLength": 64,
                  "pattern": r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"},
                 description, **extra)


def array(description: str, items: dict, *, rules=None, **extra) -> dict:
    return _with({"type": "array", "items": items}, description, rules, **extra)


def obj(description: str, properties: dict | None = None, *, required=(), rules=None, **extra) -> dict:
    schema: dict[str, Any] = {"type": "object"}
    if properties is not None:
        schema["properties"] = properties
    if required:
        schema["required"] = list(required)
    return _with(schema, description, rules, **extra)


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
