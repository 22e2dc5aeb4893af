"""spec.engineArgs -> vLLM command-line flags. Pure."""

from __future__ import annotations

import re

# Booleans whose vLLM default is True: False must be said explicitly with the --no- form.
_DEFAULT_ON = {"enablePrefixCaching"}
_DERIVED = {"tensorParallelSize", "extraArgs"}


def flag(field: str) -> str:
    """maxModelLen -> --max-model-len"""
    return "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", field).lower()


def tensor_parallel_size(spec: dict) -> int:
    args = spec.get("engineArgs") or {}
    if "tensorParallelSize" in args:
        return args["tensorParallelSize"]
    gpus = spec.get("gpus", 0)
    return max(1, gpus // args.get("pipelineParallelSize", 1)) if gpus else 1


def engine_flags(spec: dict) -> list[str]:
    args = spec.get("engineArgs") or {}
    out: list[str] = []
    tp = tensor_parallel_size(spec)
    if tp > 1:
        out += ["--tensor-parallel-size", str(tp)]
    for field in sorted(args):
        if field in _DERIVED:
            continue
        value = args[field]
        if isinstance(value, bool):
            if value:
                out.append(flag(field))
            elif field in _DEFAULT_ON:
                out.append("--no-" + flag(field)[2:])
        else:
            out += [flag(field), str(value)]
    return out + list(args.get("extraArgs", []))
