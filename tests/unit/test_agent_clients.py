"""The agents library's Agent Framework and OpenAI SDK entry points (no network: a mock transport answers), the
tool-choice warning, and the injected env being enough for clients built with no arguments."""

import asyncio
import json
import re
import warnings

import httpx2
import openai
import pytest

from modelplane_agents import (ModelNotFound, ModelNotReady, ToolChoiceUnsupported, UnsupportedProvider,
                               agent_framework_client, async_openai_client, model_client, model_settings,
                               openai_client, tool_choice_problem)
from modelplane_operator.agent import injected_env, render_agent_children, resolve
from modelplane_operator.agentconfig import api_key_env, config_files
from modelplane_operator.config import Config
import builders

TOOLS = {"enableAutoToolChoice": True, "toolCallParser": "hermes"}
ENDPOINT = "http://{}.team-a.svc.cluster.local:8000/v1"


def model(name="qwen", **spec):
    return builders.model(name, "team-a", uid=f"u-{name}", phase="Ready", **spec)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Nothing from the host's environment: only what a test sets, as in an injected pod."""
    import os
    for var in list(os.environ):
        if var.startswith(("OPENAI_", "AZURE_OPENAI_", "MODELPLANE_")):
            monkeypatch.delenv(var)


def write(folder, *models, default=None, ready=True):
    for name, text in config_files([(m, ready) for m in models], Config(), default).items():
        (folder / name).write_text(text)
    return folder


class Server:
    """A mock transport answering Chat Completions like vLLM would, recording each request body, and whether the
    tool-choice warning had already been given when it arrived."""

    def __init__(self, tool_call=False):
        self.bodies, self.warned_before, self.tool_call, self.log = [], [], tool_call, None

    def __call__(self, request):
        body = json.loads(request.content)
        self.bodies.append(body)
        self.warned_before.append(any(issubclass(w.category, ToolChoiceUnsupported) for w in self.log or []))
        message = {"role": "assistant", "content": "hi"}
        if self.tool_call and len(self.bodies) == 1:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "cluster_size", "arguments": "{}"}}]}
        return httpx2.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    def async_client(self):
        return openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(self))

    def client(self):
        return openai.DefaultHttpxClient(transport=httpx2.MockTransport(self))


def test_index_says_what_each_model_serves_of_tool_calling(tmp_path):
    write(tmp_path, model(), model("tools", engineArgs=TOOLS), model("parser", engineArgs={"toolCallParser": "x"}))
    plain, tools, parser = (model_settings(n, path=tmp_path) for n in ("qwen", "tools", "parser"))
    assert (plain.auto_tool_choice, plain.tool_call_parser) == (False, None)
    assert (tools.auto_tool_choice, tools.tool_call_parser) == (True, "hermes")
    assert (parser.auto_tool_choice, parser.tool_call_parser) == (False, "x")
    assert plain.model == "qwen" and plain.base_url == ENDPOINT.format("qwen") and plain.api_key == "no-key"
    assert "no-key" not in repr(plain)  # keys stay out of logs


def test_an_index_from_an_older_operator_falls_back_to_autogens_model_info(tmp_path):
    write(tmp_path, model(engineArgs=TOOLS), model("plain"))
    index = json.loads((tmp_path / "index.json").read_text())
    for entry in index["models"]:
        del entry["autoToolChoice"], entry["toolCallParser"]
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert model_settings("qwen", path=tmp_path).auto_tool_choice is True
    assert model_settings("plain", path=tmp_path).auto_tool_choice is False


@pytest.mark.parametrize("request_body, problem", [
    ({"messages": []}, None),
    ({"tools": [{"type": "function"}]}, '"auto"'),
    ({"tools": [{"type": "function"}], "tool_choice": "auto"}, '"auto"'),
    ({"tools": [{"type": "function"}], "tool_choice": "none"}, None),
    ({"tools": [{"type": "function"}], "tool_choice": "required"}, "no tool-call parser"),
    ({"tools": [{"type": "function"}], "tool_choice": {"type": "function", "function": {"name": "f"}}},
     "no tool-call parser"),
])
def test_tool_choice_problems_follow_vllms_rules(tmp_path, request_body, problem):
    write(tmp_path, model(), model("tools", engineArgs=TOOLS), model("parser", engineArgs={"toolCallParser": "x"}))
    found = tool_choice_problem(model_settings("qwen", path=tmp_path), request_body)
    assert (found is None) if problem is None else (problem in found and "team-a/qwen" in found), found
    assert tool_choice_problem(model_settings("tools", path=tmp_path), request_body) is None
    with_parser = tool_choice_problem(model_settings("parser", path=tmp_path), request_body)
    assert (with_parser is not None) == (problem == '"auto"')  # a parser serves "required" and named tools
    if with_parser:
        assert 'or ask for tool_choice "required"' in with_parser


def test_openai_clients_get_the_endpoint_and_key(tmp_path, monkeypatch):
    keyed = model("keyed", apiKeySecretRef={"name": "k"})
    write(tmp_path, model(), keyed)
    monkeypatch.setenv(api_key_env(keyed), "sekret")
    sync, async_ = openai_client("qwen", path=tmp_path), async_openai_client("keyed", path=tmp_path, max_retries=0)
    assert isinstance(sync, openai.OpenAI) and isinstance(async_, openai.AsyncOpenAI)
    assert str(sync.base_url) == ENDPOINT.format("qwen") + "/" and sync.api_key == "no-key"
    assert str(async_.base_url) == ENDPOINT.format("keyed") + "/" and async_.api_key == "sekret"
    assert async_.max_retries == 0
    override = openai_client("qwen", path=tmp_path, base_url="http://127.0.0.1:8000/v1")
    assert str(override.base_url) == "http://127.0.0.1:8000/v1/"


def test_agent_framework_client_is_the_chat_completions_one(tmp_path, monkeypatch):
    from agent_framework.openai import OpenAIChatClient, OpenAIChatCompletionClient

    keyed = model("keyed", servedModelName="org/keyed-v1", apiKeySecretRef={"name": "k"})
    write(tmp_path, keyed)
    monkeypatch.setenv(api_key_env(keyed), "sekret")
    client = agent_framework_client(path=tmp_path)  # the only model is the default
    assert isinstance(client, OpenAIChatCompletionClient) and not isinstance(client, OpenAIChatClient)
    assert client.model == "org/keyed-v1"
    assert type(client.client) is openai.AsyncOpenAI  # OpenAI routing, never Azure
    assert str(client.client.base_url) == ENDPOINT.format("keyed") + "/" and client.client.api_key == "sekret"


def test_every_entry_point_resolves_and_refuses_alike(tmp_path, monkeypatch):
    """The same rules and errors as model_client: unknown names list the available ones, a missing key is named,
    a not-ready Model is refused when asked, a foreign provider is refused before the key is read."""
    keyed = model("keyed", apiKeySecretRef={"name": "k"})
    write(tmp_path, model(), keyed, ready=False)
    entry_points = [model_client, openai_client, async_openai_client, agent_framework_client, model_settings]
    for entry_point in entry_points:
        with pytest.raises(ModelNotFound, match="'mistral' is not injected here; available: qwen, keyed"):
            entry_point("mistral", path=tmp_path)
        with pytest.raises(ModelNotFound, match="no default model; name one of: qwen, keyed"):
            entry_point(path=tmp_path)
        with pytest.raises(ModelNotReady, match=f"{api_key_env(keyed)} is not set in this pod"):
            entry_point("keyed", path=tmp_path)
        with pytest.raises(ModelNotReady, match="'qwen' is not ready"):
            entry_point("qwen", path=tmp_path, require_ready=True)
    monkeypatch.setenv("OPENAI_BASE_URL", ENDPOINT.format("keyed"))  # an injected pod's own default
    monkeypatch.setenv(api_key_env(keyed), "sekret")
    assert {model_settings(path=tmp_path).name, agent_framework_client(path=tmp_path).model} == {"keyed"}
    component = json.loads((tmp_path / "team-a.keyed.json").read_text())
    component["provider"] = "evil_module.KeyStealer"
    (tmp_path / "team-a.keyed.json").write_text(json.dumps(component))
    for entry_point in entry_points:
        with pytest.raises(UnsupportedProvider, match="is not allowed"):
            entry_point("keyed", path=tmp_path)


def run_agent(client, **agent_args):
    from agent_framework import Agent

    async def go():
        return await Agent(client=client, instructions="Be brief.", **agent_args).run("How many nodes?")
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        client.client._client._transport.handler.log = log  # the mock sees the warnings so far
        response = asyncio.run(go())
    return response, [w for w in log if issubclass(w.category, ToolChoiceUnsupported)]


def cluster_size() -> int:
    """Number of nodes."""
    return 3


def test_agent_with_tools_on_a_model_without_auto_tool_choice_warns_before_its_first_request(tmp_path):
    write(tmp_path, model(), model("tools", engineArgs=TOOLS))
    server = Server()
    response, warned = run_agent(agent_framework_client("qwen", path=tmp_path, http_client=server.async_client()),
                                 tools=[cluster_size])
    assert server.bodies[0]["tool_choice"] == "auto" and server.warned_before == [True]
    assert len(warned) == 1 and "model team-a/qwen cannot serve tools with tool_choice \"auto\"" in str(
        warned[0].message) and "enableAutoToolChoice: true" in str(warned[0].message)
    assert response.text == "hi" and response.usage_details["output_token_count"] == 1

    for name, tools in (("qwen", None), ("tools", [cluster_size])):  # no tools, or a Model that serves "auto"
        server = Server()
        response, warned = run_agent(agent_framework_client(name, path=tmp_path, http_client=server.async_client()),
                                     **({"tools": tools} if tools else {}))
        assert not warned and server.bodies and response.text == "hi"


def test_agent_framework_runs_a_forced_tool_call(tmp_path):
    """tool_choice "required" on a Model with a parser but no auto tool choice: no warning, the tool runs, and
    Agent Framework asks again without "required" (which this Model would take as "auto"), so it warns then."""
    write(tmp_path, model(engineArgs={"toolCallParser": "hermes"}))
    server, ran = Server(tool_call=True), []

    def cluster_size() -> int:
        """Number of nodes."""
        ran.append(1)
        return 3

    response, warned = run_agent(agent_framework_client(path=tmp_path, http_client=server.async_client()),
                                 tools=[cluster_size], default_options={"tool_choice": "required"})
    assert ran == [1] and server.bodies[0]["tool_choice"] == "required"
    assert "tool_choice" not in server.bodies[1] and server.warned_before == [False, True] and len(warned) == 1


def test_openai_sdk_with_tools_warns_once_before_the_request(tmp_path):
    write(tmp_path, model())
    server = Server()
    client = openai_client(path=tmp_path, http_client=server.client())
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        server.log = log
        client.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}])
        for _ in range(2):
            client.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}], tools=tools)
    assert server.warned_before == [False, True, True]
    assert [issubclass(w.category, ToolChoiceUnsupported) for w in log] == [True]  # once per client


def injected(monkeypatch, *models, keys=None):
    """The env the operator gives an Agent's pod on these Models (the first the default), as the kubelet sets it."""
    agent = builders.agent("bot", "team-a", *({"name": m["metadata"]["name"]} for m in models), uid="a")
    _, deployment = render_agent_children(agent, resolve("team-a", agent["spec"]["models"],
                                                         {("team-a", m["metadata"]["name"]): m for m in models}.get),
                                          Config())
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == injected_env(resolve("team-a", agent["spec"]["models"],
                                       {("team-a", m["metadata"]["name"]): m for m in models}.get), Config())
    for var in env:
        value = var.get("value")
        if "valueFrom" in var:
            value = (keys or {}).get(var["valueFrom"]["secretKeyRef"]["name"])
        if value is not None:
            monkeypatch.setenv(var["name"], value)
    return {v["name"] for v in env}


@pytest.mark.parametrize("keyed", [False, True])
def test_clients_built_with_no_arguments_reach_the_default_model_from_the_env_alone(monkeypatch, keyed):
    from agent_framework.openai import OpenAIChatCompletionClient

    spec = {"apiKeySecretRef": {"name": "k"}} if keyed else {}
    names = injected(monkeypatch, model("qwen", servedModelName="qwen-2.5", **spec), model("llama"),
                     keys={"k": "sekret"})
    assert {"OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY", "MODELPLANE_CONFIG_DIR"} <= names
    key = "sekret" if keyed else "no-key"  # keyless Models get a placeholder: vLLM takes any key without --api-key
    maf = OpenAIChatCompletionClient()
    assert maf.model == "qwen-2.5" and type(maf.client) is openai.AsyncOpenAI  # not Azure routing
    assert str(maf.client.base_url) == ENDPOINT.format("qwen") + "/" and maf.client.api_key == key
    sdk = openai.OpenAI()
    assert str(sdk.base_url) == ENDPOINT.format("qwen") + "/" and sdk.api_key == key


def test_without_a_key_agent_framework_would_not_reach_the_model(monkeypatch):
    """Why a keyless Model's pods get OPENAI_API_KEY=no-key: without any key Agent Framework turns to Azure's
    settings and fails with a message about Azure endpoints."""
    from agent_framework.openai import OpenAIChatCompletionClient

    injected(monkeypatch, model())
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(Exception, match="endpoint"):
        OpenAIChatCompletionClient()


def test_the_agents_image_pins_the_frameworks_the_tests_run_with():
    """agents/constraints.txt (the image's pip constraints) and requirements/dev.txt (this environment) agree, and
    this environment has them."""
    from importlib.metadata import version
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]

    def pins(path):
        lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
        return dict(re.sub(r"\[.*\]", "", line).split("==") for line in lines if "==" in line)

    image = pins(repo / "agents" / "constraints.txt")
    assert image and {name: pins(repo / "requirements" / "dev.txt").get(name) for name in image} == image
    assert {name: version(name) for name in image} == image
