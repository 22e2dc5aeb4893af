"""spec.engineArgs -> vLLM command-line flags, following the option kinds generated from vLLM's parser. Pure."""

from __future__ import annotations

import json
import math

from .config import ENGINE_ARG_DEFAULTS
from .crd import REFUSED_ENGINE_ARGS, parallel_factors, vllm_options

_OWN = {"tensorParallelSize", "extraArgs"}


def tensor_parallel_size(spec: dict) -> int:
    """engineArgs.tensorParallelSize, else gpus / (pipeline × prefill-context × data parallel sizes): vLLM uses
    their product of GPUs, which must be the replica's (the CRD's rules refuse anything else at admission)."""
    args = spec.get("engineArgs") or {}
    if "tensorParallelSize" in args:
        return args["tensorParallelSize"]
    gpus = spec.get("gpus", 0)
    others = math.prod(max(1, args.get(name) or 1) for name in parallel_factors())
    return max(1, gpus // others) if gpus else 1


def option_flags(name: str, value) -> list[str]:
    """The flags of one vLLM option. An option vllm_options.json does not have renders nothing (see
    engine_flags_and_ignored), and so does an empty list: vLLM refuses a list flag without values."""
    opt = vllm_options()["options"].get(name)
    if opt is None:
        return []
    flag, kind = opt["flag"], opt["kind"]
    if kind == "bool_optional":
        return [flag] if value else ["--no-" + flag[2:]]
    if kind == "store_true":
        return [flag] if value else []
    if kind in ("list", "append"):
        values = value if isinstance(value, list) else [value]  # a scalar stored under an older schema
        if kind == "list":
            return [flag, *map(str, values)] if values else []
        return [part for v in values for part in (flag, str(v))]
    if kind == "json":
        return [flag, json.dumps(value, separators=(",", ":"), sort_keys=True)]
    return [flag, str(value)]


def engine_flags_and_ignored(spec: dict, defaults: dict | None = None) -> tuple[list[str], list[str]]:
    """The vLLM flags, and the sorted names of the engineArgs left out: options the current vllm_options.json no
    longer has (a Model stored under an older vLLM's schema) and options the operator refuses (REFUSED_ENGINE_ARGS)
    that a Model stored before the refusal still sets. The caller reports the ignored names; nothing raises.

    `defaults` (derived by the operator) give way to the user's engineArgs, as ENGINE_ARG_DEFAULTS do."""
    args = {**ENGINE_ARG_DEFAULTS, **(defaults or {}), **(spec.get("engineArgs") or {})}
    known = vllm_options()["options"]
    out: list[str] = []
    ignored: list[str] = []
    tp = tensor_parallel_size(spec)
    if tp > 1:
        out += ["--tensor-parallel-size", str(tp)]
    for name in sorted(args):
        if name in _OWN:
            continue
        flags = option_flags(name, args[name])
        if name not in known or (name in REFUSED_ENGINE_ARGS and flags):
            ignored.append(name)
        else:
            out += flags
    return out + list(args.get("extraArgs", [])), ignored


def engine_flags(spec: dict, defaults: dict | None = None) -> list[str]:
    """The vLLM flags of engine_flags_and_ignored, for callers that report the ignored names separately."""
    return engine_flags_and_ignored(spec, defaults)[0]


def ignored_engine_args(spec: dict, defaults: dict | None = None) -> list[str]:
    """The engineArgs that engine_flags leaves out (see engine_flags_and_ignored): worth a Warning Event."""
    return engine_flags_and_ignored(spec, defaults)[1]
