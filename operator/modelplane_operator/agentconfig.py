"""What an AutoGen workload is given to find a Model (or one of its LoRA adapters): an AutoGen component config for
its chat client, and an index entry saying where the API key comes from. Pure. The key itself never appears here: the
pod gets it through a secretKeyRef env var, named in the index."""

from __future__ import annotations

import hashlib
import json
import re

from .config import Config
from .model import endpoint, served_model_name, spec_of
from .routing import session_header

CLIENT_PROVIDER = "autogen_ext.models.openai.OpenAIChatCompletionClient"
# A Model that scales to zero answers 503 while its first replica loads: the OpenAI SDK (under AutoGen too) retries
# 503s, backing off up to 8 s, so this many retries wait out a cold start of about five minutes.
COLD_START_RETRIES = 40


def cold_start_retries(model: dict) -> int | None:
    """Retries a client of this Model needs to ride out a cold start, when it can scale to zero; else None."""
    scaling = spec_of(model).get("autoscaling")
    return COLD_START_RETRIES if scaling and scaling["minReplicas"] == 0 else None
INDEX_FILE = "index.json"


def tool_calling(spec: dict) -> dict:
    """What the server does with tools, from the flags it gets (engineArgs, then extraArgs, which come last and so
    win): {"autoToolChoice": whether it serves tool_choice "auto" (vLLM's --enable-auto-tool-choice, which the CRD
    lets on only with a parser), "toolCallParser": the parser, which tool_choice "required" or a named tool needs}.
    vLLM refuses tools with tool_choice "auto" (or none given: it means "auto") unless both are set."""
    args = spec.get("engineArgs") or {}
    auto, parser = bool(args.get("enableAutoToolChoice")), args.get("toolCallParser") or None
    extra = [str(a) for a in args.get("extraArgs") or []]
    for i, arg in enumerate(extra):
        if arg in ("--enable-auto-tool-choice", "--no-enable-auto-tool-choice"):
            auto = arg == "--enable-auto-tool-choice"
        elif arg == "--tool-call-parser" and i + 1 < len(extra):
            parser = extra[i + 1]
        elif arg.startswith("--tool-call-parser="):
            parser = arg.split("=", 1)[1] or None
    return {"autoToolChoice": auto and parser is not None, "toolCallParser": parser}


def model_info(spec: dict) -> dict:
    """AutoGen's ModelInfo: what the client may ask of this server. AutoGen asks for tools with tool_choice "auto"
    (AssistantAgent refuses tools when function_calling is false, before any request)."""
    return {
        "vision": False,
        "function_calling": tool_calling(spec)["autoToolChoice"],
        "json_output": True,  # vLLM's guided decoding serves response_format json_object
        "structured_output": True,  # and json_schema
        "family": "unknown",
    }


def served_name(model: dict, adapter: str = "") -> str:
    """What a client sends as `model`: vLLM serves each adapter under its own name, on its Model's replicas."""
    return adapter or served_model_name(model)


def reference(name: str, adapter: str = "") -> str:
    """How a workload names a Model or one of its adapters: "qwen", or "qwen:sql" (what modelplane_agents takes)."""
    return f"{name}:{adapter}" if adapter else name


def config_file(model: dict, adapter: str = "") -> str:
    """<namespace>.<name>[.<adapter>].json. Namespaces, Model names and adapter names are DNS labels (no dots), so
    the count of dots tells a base from an adapter and no two references share a file."""
    meta = model["metadata"]
    return ".".join([meta["namespace"], meta["name"], *([adapter] if adapter else []), "json"])


def client_component(model: dict, config: Config, base_url: str | None = None, adapter: str = "") -> dict:
    """The component config that `ChatCompletionClient.load_component` turns into a ready client (of `adapter`,
    when one is named: the same server, its name sent as `model`)."""
    meta = model["metadata"]
    return {
        "provider": CLIENT_PROVIDER,
        "component_type": "model",
        "version": 1,
        "component_version": 1,
        "description": f"modelplane Model {meta['namespace']}/{meta['name']}"
                       + (f", LoRA adapter {adapter}" if adapter else ""),
        "label": reference(meta["name"], adapter),
        "config": {
            "model": served_name(model, adapter),
            "base_url": base_url or endpoint(model, config),
            "model_info": model_info(spec_of(model)),
            **({"max_retries": cold_start_retries(model)} if cold_start_retries(model) else {}),
            # No stream_options here: AutoGen would send them on plain requests too, which vLLM refuses with 400.
            # The server adds usage to every stream instead (ENGINE_ARG_DEFAULTS).
        },
    }


def api_key_env(model: dict) -> str | None:
    """Name of the env var that carries this Model's API key into an agent pod, if the Model has one:
    MODELPLANE_API_KEY_<NAMESPACE>_<NAME>_<HASH>. Upper case with `_` for `-` is readable but loses where the
    namespace ends (team-a/x and team/a-x both give TEAM_A_X), so 8 hex digits of the SHA-256 of "namespace/name"
    tell such Models apart. Stable: the same Model always gets the same name. Agents read it from index.json."""
    if not (model.get("spec") or {}).get("apiKeySecretRef"):
        return None
    meta = model["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    readable = re.sub(r"[^A-Z0-9]", "_", key.upper())
    digest = hashlib.sha256(key.encode()).hexdigest()[:8].upper()
    return f"MODELPLANE_API_KEY_{readable}_{digest}"


def index_entry(model: dict, config: Config, ready: bool, adapter: str = "") -> dict:
    """What the library finds a Model (or adapter) by: `name` is the Model's, `adapter` null for the Model itself.
    An adapter is served by its Model's replicas: same endpoint, key and tool calling."""
    meta = model["metadata"]
    return {"name": meta["name"], "namespace": meta["namespace"], "adapter": adapter or None,
            "file": config_file(model, adapter), "servedModelName": served_name(model, adapter),
            "endpoint": endpoint(model, config), "ready": ready,
            "apiKeyEnv": api_key_env(model), **tool_calling(spec_of(model)),
            # the header the Model's router keeps a conversation on one replica by (modelplane_agents sends one value
            # per client it makes, a client being one conversation); null when its routing needs none
            "sessionHeader": session_header(model)}


def config_files(models: list[tuple], config: Config, default: str | None = None) -> dict[str, str]:
    """The files an agent pod mounts: index.json and one component config per (Model, ready[, adapter]) tuple.
    `default`: the reference ("qwen", "qwen:sql") the index names as the default."""
    files, entries = {}, []
    for model, ready, *rest in models:
        adapter = rest[0] if rest else ""
        entry = index_entry(model, config, ready, adapter)
        files[entry["file"]] = json.dumps(client_component(model, config, adapter=adapter), indent=1,
                                          sort_keys=True)
        entries.append(entry)
    files[INDEX_FILE] = json.dumps({"default": default, "models": entries}, indent=1, sort_keys=True)
    return files
