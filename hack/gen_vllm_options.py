"""Write vLLM's own server options as the source of `spec.engineArgs` (run with the vLLM environment's Python).

Imports the argument parser of the pinned vLLM and writes operator/modelplane_operator/vllm_options.json: for
every option its camelCase field name, its flag, how it is rendered, and its OpenAPI schema (type, enum from
vLLM's choices, the help text and default as the description). The operator never imports vLLM; it reads this file.

    .venv-vllm/bin/python hack/gen_vllm_options.py [OUT]      (make vllm-options)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "operator" / "modelplane_operator" / "vllm_options.json"
# Owned by the operator: set from the Model's own fields (tensor parallel size is a typed field with its own rules).
OWNED = {"model", "host", "port", "uds", "api-key", "served-model-name", "tensor-parallel-size", "help",
         "log-config-file"}
JSON_TYPES = {"parse_dataclass", "loads", "union_dict_and_str"}
INT_OR_STRING_TYPES = {"human_readable_int", "human_readable_int_or_auto"}


def parser() -> argparse.ArgumentParser:
    # vLLM fills in each option's help text only when it sees "--help" somewhere in argv.
    sys.argv = [sys.argv[0], "--help-texts-for-schema"]
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    return make_arg_parser(FlexibleArgumentParser())


def camel(flag: str) -> str:
    head, *rest = flag.lstrip("-").split("-")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def base_type(t) -> str:
    """The name of an option's value type, looking through vLLM's optional/parse wrappers."""
    while t is not None and getattr(t, "__name__", "") in ("_optional_type", "_parse_type") and t.__closure__:
        t = t.__closure__[0].cell_contents
    return getattr(t, "__name__", "str") if t is not None else "str"


def describe(action: argparse.Action) -> str:
    text = re.sub(r"\s+", " ", (action.help or "").replace("%%", "%")).strip()
    if len(text) > 1200:
        text = text[:1200].rsplit(" ", 1)[0] + " …"
    default = action.default
    if default not in (None, argparse.SUPPRESS, [], {}, "") and not callable(default):
        text += f" vLLM default: {json.dumps(default, default=str)}."
    return f"{text} ({action.option_strings[0]})".strip()


def scalar_schema(type_name: str, choices) -> dict:
    if type_name in JSON_TYPES:  # any JSON value (object, list, string ...), rendered with json.dumps
        return {"x-kubernetes-preserve-unknown-fields": True}
    if type_name in INT_OR_STRING_TYPES:
        return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    if type_name == "int":
        schema = {"type": "integer", "format": "int64"}
    elif type_name == "float":
        schema = {"type": "number"}
    else:
        schema = {"type": "string"}
    if choices and all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in choices):
        schema["enum"] = sorted({str(c) if schema["type"] == "string" else c for c in choices}, key=str)
    return schema


def option(action: argparse.Action) -> tuple[str, dict] | None:
    longs = [o for o in action.option_strings if o.startswith("--")]
    if not longs or longs[0][2:] in OWNED or type(action).__name__ == "DeprecatedLogConfigFileAction":
        return None
    flag = longs[0]
    kind_name = type(action).__name__
    if kind_name == "BooleanOptionalAction":
        kind, schema = "bool_optional", {"type": "boolean"}
    elif kind_name == "_StoreTrueAction":
        kind, schema = "store_true", {"type": "boolean"}
    elif kind_name == "_AppendAction" or action.nargs in ("+", "*") or kind_name == "LoRAParserAction":
        kind = "append" if kind_name == "_AppendAction" else "list"
        items = {**scalar_schema(base_type(action.type), action.choices), "description": "One value."}
        schema = {"type": "array", "items": items}
    else:
        type_name = base_type(action.type)
        kind = "json" if type_name in JSON_TYPES else "value"
        schema = scalar_schema(type_name, action.choices)
    schema["description"] = describe(action)
    return camel(flag), {"flag": flag, "kind": kind, "schema": schema}


def generate() -> dict:
    actions = parser()._actions
    import vllm
    options = {}
    for action in actions:
        found = option(action)
        if found and found[0] not in options:
            options[found[0]] = found[1]
    return {"vllmVersion": vllm.__version__, "options": dict(sorted(options.items()))}


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    out = Path(argv[0]) if argv else OUT
    text = json.dumps(generate(), indent=1, sort_keys=False) + "\n"
    if str(out) == "-":
        sys.stdout.write(text)
    else:
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
