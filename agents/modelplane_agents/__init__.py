"""Ready AutoGen clients for modelplane Models, by name.

The operator mounts a folder (MODELPLANE_CONFIG_DIR, /etc/modelplane by default) holding index.json and one AutoGen
component config per Model. API keys are never in those files: the index names the env var (set from a Secret)
that carries each Model's key.

    from modelplane_agents import model_client
    client = model_client("qwen-7b")          # or model_client() for the default model
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

CONFIG_DIR_ENV = "MODELPLANE_CONFIG_DIR"
DEFAULT_CONFIG_DIR = "/etc/modelplane"
INDEX_FILE = "index.json"
# vLLM without --api-key accepts any key, but the OpenAI client insists on having one.
NO_KEY = "no-key"
# The only client classes a mounted config may name (the operator writes the first): an API key is only ever handed
# to AutoGen's OpenAI-compatible client, never to whatever class a tampered or foreign file names. The short names
# are AutoGen's own aliases of the same class (autogen_core WELL_KNOWN_PROVIDERS).
OPENAI_PROVIDER = "autogen_ext.models.openai.OpenAIChatCompletionClient"
ALLOWED_PROVIDERS = frozenset({
    OPENAI_PROVIDER,
    "OpenAIChatCompletionClient",
    "openai_chat_completion_client",
})

__all__ = ["ALLOWED_PROVIDERS", "ModelNotFound", "ModelNotReady", "UnsupportedProvider", "available_models",
           "component_config", "load_index", "model_client"]


class ModelNotFound(LookupError):
    """The named model is not among those injected into this workload."""


class ModelNotReady(RuntimeError):
    """The model is known but the operator reports it is not ready to serve."""


class UnsupportedProvider(ValueError):
    """The model's component config names a client class other than the OpenAI-compatible one modelplane writes."""


def config_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def load_index(path: str | os.PathLike | None = None) -> dict:
    folder = config_dir(path)
    try:
        return json.loads((folder / INDEX_FILE).read_text())
    except FileNotFoundError:
        raise ModelNotFound(f"no modelplane configuration in {folder} (is the workload injected? set "
                            f"{CONFIG_DIR_ENV} to its folder)") from None


def available_models(path: str | os.PathLike | None = None) -> list[str]:
    return [entry["name"] for entry in load_index(path).get("models", [])]


def _pod_default(models: list[dict], folder: Path) -> str | None:
    """The model the webhook made this pod's default: the one whose endpoint is the injected OPENAI_BASE_URL. An
    injected pod mounts its namespace's shared configuration, whose index has no default of its own."""
    base_url = os.environ.get("OPENAI_BASE_URL")
    for entry in models if base_url else ():
        component = json.loads((folder / entry["file"]).read_text())
        if component["config"].get("base_url") == base_url:
            return f"{entry['namespace']}/{entry['name']}"
    return None


def _entry(index: dict, name: str | None, folder: Path) -> dict:
    models = index.get("models", [])
    if name is None:
        name = (index.get("default") or _pod_default(models, folder)
                or (models[0]["name"] if len(models) == 1 else None))
        if name is None:
            raise ModelNotFound(f"no default model; name one of: {', '.join(m['name'] for m in models) or 'none'}")
    for entry in models:
        if name in (entry["name"], f"{entry['namespace']}/{entry['name']}"):
            return entry
    raise ModelNotFound(f"model {name!r} is not injected here; available: "
                        f"{', '.join(m['name'] for m in models) or 'none'} (from {folder / INDEX_FILE})")


def component_config(name: str | None = None, *, path: str | os.PathLike | None = None,
                     base_url: str | None = None, require_ready: bool = False) -> dict:
    """The AutoGen component config for `name`, with its API key filled in from the environment."""
    folder = config_dir(path)
    entry = _entry(load_index(folder), name, folder)
    if require_ready and not entry.get("ready"):
        raise ModelNotReady(f"model {entry['name']!r} is not ready (see `kubectl describe model {entry['name']} "
                            f"-n {entry['namespace']}`)")
    component = json.loads((folder / entry["file"]).read_text())
    provider = component.get("provider")
    if not isinstance(provider, str) or provider not in ALLOWED_PROVIDERS:
        raise UnsupportedProvider(f"model {entry['name']!r}: provider {provider!r} in {folder / entry['file']} is not "
                                  f"allowed; only {OPENAI_PROVIDER} (the OpenAI-compatible client modelplane "
                                  "configures, or an AutoGen alias of it) is loaded")
    cfg = component["config"]
    key_env = entry.get("apiKeyEnv")
    # Pods started before the operator's names gained their hash suffix carry the name without it.
    cfg["api_key"] = (os.environ.get(key_env) or os.environ.get(re.sub(r"_[0-9A-F]{8}$", "", key_env), "")
                      if key_env else NO_KEY)
    if key_env and not cfg["api_key"]:
        raise ModelNotReady(f"model {entry['name']!r} needs an API key, but {key_env} is not set in this pod")
    if base_url:
        cfg["base_url"] = base_url
    return component


def model_client(name: str | None = None, *, path: str | os.PathLike | None = None, base_url: str | None = None,
                 require_ready: bool = False, **create_args):
    """A ready `ChatCompletionClient` for the named model (or the default), by AutoGen's component loading.
    `create_args` (temperature, max_tokens, ...) become the client's defaults for every request."""
    from autogen_core.models import ChatCompletionClient

    component = component_config(name, path=path, base_url=base_url, require_ready=require_ready)
    component["config"].update(create_args)
    return ChatCompletionClient.load_component(component)
