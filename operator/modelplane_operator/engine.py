"""spec.engineArgs -> vLLM command-line flags, following the option kinds generated from vLLM's parser. Pure."""

from __future__ import annotations

import json

from .config import ENGINE_ARG_DEFAULTS
from .crd import vllm_options

_OWN = {"tensorParallelSize", "extraArgs"}


def tensor_parallel_size(spec: dict) -> int:
    args = spec.get("engineArgs") or {}
    if "tensorParallelSize" in args:
        return args["tensorParallelSize"]
    gpus = spec.get("gpus", 0)
    return max(1, gpus // args.get("pipelineParallelSize", 1)) if gpus else 1


def option_flags(name: str, value) -> list[str]:
    opt = vllm_options()["options"][name]
    flag, kind = opt["flag"], opt["kind"]
    if kind == "bool_optional":
        return [flag] if value else ["--no-" + flag[2:]]
    if kind == "store_true":
        return [flag] if value else []
    if kind == "list":
        return [flag, *map(str, value)]
    if kind == "append":
        return [part for v in value for part in (flag, str(v))]
    if kind == "json":
        return [flag, json.dumps(value, separators=(",", ":"), sort_keys=True)]
    return [flag, str(value)]


def engine_flags(spec: dict, defaults: dict | None = None) -> list[str]:
    """`defaults` (derived by the operator) give way to the user's engineArgs, as ENGINE_ARG_DEFAULTS do."""
    args = {**ENGINE_ARG_DEFAULTS, **(defaults or {}), **(spec.get("engineArgs") or {})}
    out: list[str] = []
    tp = tensor_parallel_size(spec)
    if tp > 1:
        out += ["--tensor-parallel-size", str(tp)]
    for name in sorted(args):
        if name not in _OWN:
            out += option_flags(name, args[name])
    return out + list(args.get("extraArgs", []))
