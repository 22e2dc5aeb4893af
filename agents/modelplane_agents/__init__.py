"""Ready clients for modelplane Models, by name: AutoGen, Microsoft Agent Framework, or the OpenAI SDK.

The operator mounts a folder (MODELPLANE_CONFIG_DIR, /etc/modelplane by default) holding index.json and one AutoGen
component config per Model and per LoRA adapter of a Model. API keys are never in those files: the index names the
env var (set from a Secret) that carries each Model's key (an adapter's is its Model's). Every entry point below
resolves a name the same way and raises the same errors: "qwen-7b" or "team-a/qwen-7b" is the Model itself,
"qwen-7b:sql" or "team-a/qwen-7b:sql" its adapter "sql".

    from modelplane_agents import model_client             # pip install 'modelplane-agents[autogen]'
    client = model_client("qwen-7b")                       # AutoGen ChatCompletionClient; model_client(): the default
    client = model_client("qwen-7b:sql")                   # the same Model's replicas, with its adapter sql applied

    from modelplane_agents import agent_framework_client   # pip install 'modelplane-agents[agent-framework]'
    client = agent_framework_client("qwen-7b")             # Agent Framework OpenAIChatCompletionClient

    from modelplane_agents import openai_client, async_openai_client, model_settings   # the base install
    client = openai_client("qwen-7b")                      # openai.OpenAI; send model=model_settings("qwen-7b").model

Nothing here imports a framework until its entry point is called, so an image carries only the one it uses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
import warnings
from pathlib import Path

CONFIG_DIR_ENV = "MODELPLANE_CONFIG_DIR"
DEFAULT_CONFIG_DIR = "/etc/modelplane"
INDEX_FILE = "index.json"
# vLLM without --api-key accepts any key, but the OpenAI client insists on having one.
NO_KEY = "no-key"
# The only client classes a mounted config may name (the operator writes the first): an API key is only ever handed
# to an OpenAI-compatible client, never to whatever class a tampered or foreign file names. The short names are
# AutoGen's own aliases of the same class (autogen_core WELL_KNOWN_PROVIDERS).
OPENAI_PROVIDER = "autogen_ext.models.openai.OpenAIChatCompletionClient"
ALLOWED_PROVIDERS = frozenset({
    OPENAI_PROVIDER,
    "OpenAIChatCompletionClient",
    "openai_chat_completion_client",
})

__all__ = ["ALLOWED_PROVIDERS", "ModelNotFound", "ModelNotReady", "ModelSettings", "ToolChoiceUnsupported",
           "UnsupportedProvider", "agent_framework_client", "async_openai_client", "available_models",
           "component_config", "load_index", "model_client", "model_settings", "openai_client",
           "tool_choice_problem"]


class ModelNotFound(LookupError):
    """The named model is not among those injected into this workload."""


class ModelNotReady(RuntimeError):
    """The model is known but the operator reports it is not ready to serve."""


class UnsupportedProvider(ValueError):
    """The model's component config names a client class other than the OpenAI-compatible one modelplane writes."""


class ToolChoiceUnsupported(UserWarning):
    """A request asks for tools in a way the Model's server refuses (it would answer 400)."""


def config_dir(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def load_index(path: str | os.PathLike | None = None) -> dict:
    folder = config_dir(path)
    try:
        return json.loads((folder / INDEX_FILE).read_text())
    except FileNotFoundError:
        raise ModelNotFound(f"no modelplane configuration in {folder} (is the workload injected? set "
                            f"{CONFIG_DIR_ENV} to its folder)") from None


def _names(entry: dict) -> tuple[str, str]:
    """The names an index entry answers to: "model" and "namespace/model", or with ":adapter" for an adapter (an
    index written before adapters has no "adapter" key: every entry is a Model)."""
    ref = f"{entry['name']}:{entry['adapter']}" if entry.get("adapter") else entry["name"]
    return ref, f"{entry['namespace']}/{ref}"


def available_models(path: str | os.PathLike | None = None) -> list[str]:
    """The names of what is injected here: "qwen" for a Model, "qwen:sql" for its adapter sql."""
    return [_names(entry)[0] for entry in load_index(path).get("models", [])]


def _pod_default(models: list[dict], folder: Path) -> str | None:
    """The model the webhook made this pod's default: the one at the injected OPENAI_BASE_URL that serves
    OPENAI_MODEL (a Model's adapters share its endpoint), else the first there (the Model itself, listed before its
    adapters, whose served name may have changed since the pod started). An injected pod mounts its namespace's
    shared configuration, whose index has no default of its own."""
    base_url, served = os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_MODEL")
    there = []  # (entry, its served name) of the entries at base_url
    for entry in models if base_url else ():
        config = json.loads((folder / entry["file"]).read_text())["config"]
        if config.get("base_url") == base_url:
            there.append((entry, config.get("model")))
    chosen = next((entry for entry, model in there if model == served), there[0][0] if there else None)
    return _names(chosen)[1] if chosen else None


def _entry(index: dict, name: str | None, folder: Path) -> dict:
    models = index.get("models", [])
    available = ", ".join(_names(m)[0] for m in models) or "none"
    if name is None:
        name = (index.get("default") or _pod_default(models, folder)
                or (_names(models[0])[0] if len(models) == 1 else None))
        if name is None:
            raise ModelNotFound(f"no default model; name one of: {available}")
    for entry in models:
        if name in _names(entry):
            return entry
    raise ModelNotFound(f"model {name!r} is not injected here; available: {available} (from {folder / INDEX_FILE})")


def _resolve(name: str | None, path, base_url: str | None, require_ready: bool) -> tuple[dict, dict]:
    """(index entry, component config with its API key filled in from the environment)."""
    folder = config_dir(path)
    entry = _entry(load_index(folder), name, folder)
    ref = _names(entry)[0]
    if require_ready and not entry.get("ready"):
        where = " (status.adapters)" if entry.get("adapter") else ""
        raise ModelNotReady(f"model {ref!r} is not ready (see `kubectl describe model {entry['name']} "
                            f"-n {entry['namespace']}`{where})")
    component = json.loads((folder / entry["file"]).read_text())
    provider = component.get("provider")
    if not isinstance(provider, str) or provider not in ALLOWED_PROVIDERS:
        raise UnsupportedProvider(f"model {ref!r}: provider {provider!r} in {folder / entry['file']} is not "
                                  f"allowed; only {OPENAI_PROVIDER} (the OpenAI-compatible client modelplane "
                                  "configures, or an AutoGen alias of it) is loaded")
    cfg = component["config"]
    key_env = entry.get("apiKeyEnv")
    # Pods started before the operator's names gained their hash suffix carry the name without it.
    cfg["api_key"] = (os.environ.get(key_env) or os.environ.get(re.sub(r"_[0-9A-F]{8}$", "", key_env), "")
                      if key_env else NO_KEY)
    if key_env and not cfg["api_key"]:
        raise ModelNotReady(f"model {ref!r} needs an API key, but {key_env} is not set in this pod")
    if base_url:
        cfg["base_url"] = base_url
    if entry.get("sessionHeader"):  # the Model's router keeps each conversation (each client made) on one replica
        cfg["default_headers"] = {**(cfg.get("default_headers") or {}), entry["sessionHeader"]: uuid.uuid4().hex}
    return entry, component


def component_config(name: str | None = None, *, path: str | os.PathLike | None = None,
                     base_url: str | None = None, require_ready: bool = False) -> dict:
    """The AutoGen component config for `name` ("model" or "model:adapter"), with its API key filled in from the
    environment."""
    return _resolve(name, path, base_url, require_ready)[1]


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Where a Model (or one of its adapters) is and how to call it, for any OpenAI-compatible client."""
    name: str  # the Model's
    namespace: str
    model: str  # the served model name: what requests send as "model" (an adapter's own name, for an adapter)
    base_url: str
    api_key: str = dataclasses.field(repr=False)
    ready: bool
    auto_tool_choice: bool | None  # serves tool_choice "auto"; None: the operator that wrote the index did not say
    tool_call_parser: str | None  # vLLM's tool-call parser (tool_choice "required" or a named tool needs one)
    # {header: a value of its own} for the Model's router to keep this client's conversation on one replica
    headers: dict = dataclasses.field(default_factory=dict)
    max_retries: int | None = None  # set for a Model that scales to zero: enough to ride out its cold start
    adapter: str | None = None  # the LoRA adapter of the Model it names, if any


def model_settings(name: str | None = None, *, path: str | os.PathLike | None = None, base_url: str | None = None,
                   require_ready: bool = False) -> ModelSettings:
    """The named model's (or adapter's, "model:adapter"; or the default's) served name, endpoint, key and
    tool-calling abilities."""
    entry, component = _resolve(name, path, base_url, require_ready)
    cfg = component["config"]
    auto = entry.get("autoToolChoice")
    if auto is None:  # an index from before the entry said so: AutoGen's model_info follows the same flag
        auto = (cfg.get("model_info") or {}).get("function_calling")
    return ModelSettings(entry["name"], entry["namespace"], cfg["model"], cfg["base_url"], cfg["api_key"],
                         bool(entry.get("ready")), auto, entry.get("toolCallParser"),
                         dict(cfg.get("default_headers") or {}), cfg.get("max_retries"), entry.get("adapter"))


def tool_choice_problem(settings: ModelSettings, request: dict) -> str | None:
    """Why the Model's vLLM server would refuse this Chat Completions request body for its tools, or None. vLLM
    takes tools without tool_choice as "auto", which needs auto tool choice; "required" or a named tool needs a
    tool-call parser."""
    if not request.get("tools") or settings.auto_tool_choice is None or settings.auto_tool_choice:
        return None
    choice = request.get("tool_choice")
    where = f"model {settings.namespace}/{settings.name}"
    if settings.adapter:
        where += f" (adapter {settings.adapter})"
    if choice in (None, "auto"):
        return (f'{where} cannot serve tools with tool_choice "auto" (what an agent with tools asks by default): '
                "its vLLM server runs without auto tool choice, so it will answer 400. Give the Model "
                "engineArgs enableAutoToolChoice: true and toolCallParser: <the parser of its family, e.g. hermes>, "
                + ('or ask for tool_choice "required" or a named tool.' if settings.tool_call_parser else
                   "or use a Model that has them."))
    if choice != "none" and not settings.tool_call_parser:
        return (f"{where} cannot serve tool_choice {json.dumps(choice)}: its vLLM server has no tool-call parser, "
                "so it will answer 400. Give the Model engineArgs toolCallParser: <the parser of its family>.")
    return None


def _tool_check(settings: ModelSettings):
    """A check of each request body against the Model's tool calling, warning once per client before the first
    request the server would refuse is sent."""
    warned = []

    def check(request) -> None:
        if warned or request.method != "POST":
            return
        try:
            body = json.loads(request.content or b"null")
        except (ValueError, RuntimeError):  # not JSON, or a streamed upload: no chat request
            return
        problem = tool_choice_problem(settings, body) if isinstance(body, dict) else None
        if problem:
            warned.append(problem)
            warnings.warn(f"modelplane: {problem}", ToolChoiceUnsupported, stacklevel=2)

    return check


def _openai_client(asynchronous: bool, settings: ModelSettings, client_args: dict):
    try:
        import openai
    except ImportError as e:  # the base install has it
        raise ImportError("the OpenAI SDK is missing: pip install modelplane-agents") from e
    if settings.auto_tool_choice is False:  # the only case tool_choice_problem can find one
        check = _tool_check(settings)
        http_client = client_args.get("http_client")
        if http_client is None:
            http_client = openai.DefaultAsyncHttpxClient() if asynchronous else openai.DefaultHttpxClient()
            client_args["http_client"] = http_client
        if asynchronous:
            async def hook(request):
                check(request)
        else:
            hook = check
        hooks = dict(http_client.event_hooks)
        hooks["request"] = [*hooks.get("request", []), hook]
        http_client.event_hooks = hooks
    if settings.headers:
        client_args["default_headers"] = {**settings.headers, **(client_args.get("default_headers") or {})}
    if settings.max_retries:
        client_args.setdefault("max_retries", settings.max_retries)
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(base_url=settings.base_url, api_key=settings.api_key, **client_args)


def openai_client(name: str | None = None, *, path: str | os.PathLike | None = None, base_url: str | None = None,
                  require_ready: bool = False, **client_args):
    """An `openai.OpenAI` client for the named model (or the default): its endpoint and key. Requests name the model
    themselves: `model=model_settings(name).model` (or os.environ["OPENAI_MODEL"] for the default). `client_args`
    (timeout, max_retries, http_client, ...) go to `openai.OpenAI`. When the Model cannot serve tool_choice "auto",
    the first request that would be refused for it warns (ToolChoiceUnsupported) before it is sent."""
    return _openai_client(False, model_settings(name, path=path, base_url=base_url, require_ready=require_ready),
                          client_args)


def async_openai_client(name: str | None = None, *, path: str | os.PathLike | None = None,
                        base_url: str | None = None, require_ready: bool = False, **client_args):
    """`openai_client`, as an `openai.AsyncOpenAI`."""
    return _openai_client(True, model_settings(name, path=path, base_url=base_url, require_ready=require_ready),
                          client_args)


def agent_framework_client(name: str | None = None, *, path: str | os.PathLike | None = None,
                           base_url: str | None = None, require_ready: bool = False, http_client=None,
                           **client_args):
    """A ready Microsoft Agent Framework chat client for the named model (or the default):
    `agent_framework.openai.OpenAIChatCompletionClient` (Chat Completions, which vLLM serves; `OpenAIChatClient` is
    the Responses API), on an `AsyncOpenAI` from `async_openai_client` (`http_client` is that one's). `client_args`
    (middleware, instruction_role, function_invocation_configuration, ...) go to the MAF client; per-request options
    (temperature, max_tokens, tool_choice) belong to the Agent. An Agent with tools asks for tool_choice "auto": on a
    Model that cannot serve it, the first such request warns (ToolChoiceUnsupported) before it is sent."""
    try:
        from agent_framework.openai import OpenAIChatCompletionClient
    except ImportError as e:
        raise ImportError("agent_framework_client needs Microsoft Agent Framework: "
                          "pip install 'modelplane-agents[agent-framework]'") from e
    settings = model_settings(name, path=path, base_url=base_url, require_ready=require_ready)
    async_client = _openai_client(True, settings, {} if http_client is None else {"http_client": http_client})
    return OpenAIChatCompletionClient(model=settings.model, async_client=async_client, **client_args)


def model_client(name: str | None = None, *, path: str | os.PathLike | None = None, base_url: str | None = None,
                 require_ready: bool = False, **create_args):
    """A ready AutoGen `ChatCompletionClient` for the named model (or the default), by AutoGen's component loading.
    `create_args` (temperature, max_tokens, ...) become the client's defaults for every request. Its model_info says
    function_calling only when the Model serves tool_choice "auto": AutoGen refuses an agent's tools otherwise."""
    try:
        from autogen_core.models import ChatCompletionClient
    except ImportError as e:
        raise ImportError("model_client needs AutoGen: pip install 'modelplane-agents[autogen]'") from e

    component = component_config(name, path=path, base_url=base_url, require_ready=require_ready)
    component["config"].update(create_args)
    return ChatCompletionClient.load_component(component)
