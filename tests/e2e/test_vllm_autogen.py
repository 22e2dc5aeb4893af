"""The server the operator renders really starts, and a real AutoGen client and agents talk to it."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from localvllm import REPO, TEST_API_KEY, agent_pod_env, http_get, vllm_python, write_agent_config

KEY = TEST_API_KEY  # the Secret's value, as the kubelet would put it into the pod


def client_for(model, base, tmp_path, monkeypatch, key=None):
    from modelplane_agents import model_client

    folder = write_agent_config(tmp_path / "modelplane", [model])
    if key:
        from modelplane_operator.agentconfig import api_key_env
        monkeypatch.setenv(api_key_env(model), key)
    # base_url as a user has it after `kubectl port-forward svc/<model> ...`
    return model_client(model["metadata"]["name"], path=folder, base_url=base + "/v1")


def test_health_and_models_list_the_served_name(plain):
    _, base = plain
    assert http_get(base + "/health")[0] == 200
    status, body = http_get(base + "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["tiny"]


def test_cpu_server_is_sized_from_its_pod_resources(plain, plain_logs):
    """vLLM took the KV cache size and thread settings the operator derived from the default 8Gi / 2 CPU, instead of
    reserving 92% of this machine's memory (it has not got that much free while other work runs)."""
    from modelplane_operator.cpuprofile import GiB, kv_cache_bytes

    log = (plain_logs / "vllm-tiny.log").read_text()
    assert f"Explicitly set ({round(kv_cache_bytes(8 * GiB) / GiB, 2)}/" in log
    assert "VLLM_CPU_OMP_THREADS_BIND='nobind'" in log


def test_autogen_create_and_stream_report_usage(plain, tmp_path, monkeypatch):
    from autogen_core.models import CreateResult, UserMessage

    client = client_for(*plain, tmp_path, monkeypatch)

    async def run():
        result = await client.create([UserMessage(content="Say hello.", source="user")],
                                     extra_create_args={"max_tokens": 16})
        chunks = [c async for c in client.create_stream([UserMessage(content="Count to three.", source="user")],
                                                         extra_create_args={"max_tokens": 16})]
        await client.close()
        return result, chunks

    result, chunks = asyncio.run(run())
    assert isinstance(result, CreateResult) and isinstance(result.content, str)
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert all(isinstance(c, str) for c in chunks[:-1]) and len(chunks) > 1
    final = chunks[-1]
    assert isinstance(final, CreateResult)
    assert final.usage.prompt_tokens > 0 and final.usage.completion_tokens > 0  # include_usage reached vLLM


def test_assistant_agent_answers(plain, tmp_path, monkeypatch):
    from autogen_agentchat.agents import AssistantAgent

    agent = AssistantAgent("assistant", model_client=client_for(*plain, tmp_path, monkeypatch))
    result = asyncio.run(agent.run(task="What is a Kubernetes operator?"))
    assert result.messages[0].content == "What is a Kubernetes operator?"
    assert result.messages[-1].source == "assistant" and isinstance(result.messages[-1].content, str)
    assert result.messages[-1].models_usage.completion_tokens > 0


def test_metrics_the_operator_relies_on(plain):
    _, base = plain
    status, text = http_get(base + "/metrics")
    assert status == 200
    for name in ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
                 "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds"):
        assert f"\n{name}" in text, name


def test_api_key_is_required(secured):
    _, base = secured
    assert http_get(base + "/v1/models")[0] == 401
    assert http_get(base + "/v1/models", {"Authorization": "Bearer wrong"})[0] == 401
    assert http_get(base + "/v1/models", {"Authorization": f"Bearer {KEY}"})[0] == 200


def test_agent_with_injected_key_and_a_tool(secured, tmp_path, monkeypatch):
    """The tool-calling Model (hermes parser) calls a tool, through the AutoGen client and through an agent that runs
    it. A tiny random-weights model never chooses a tool by itself, so the call is forced: tool_choice "required"
    (vLLM constrains the output to <tool_call> JSON naming a given tool), one call (parallel_tool_calls false),
    greedy (its arguments come out short: an empty object here, so the tool takes no required argument)."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.messages import ToolCallExecutionEvent, ToolCallRequestEvent, ToolCallSummaryMessage
    from autogen_core import FunctionCall
    from autogen_core.models import UserMessage
    from autogen_core.tools import FunctionTool
    from modelplane_agents import ModelNotReady

    with pytest.raises(ModelNotReady, match="MODELPLANE_API_KEY_AGENTS_TINY_TOOLS"):
        client_for(*secured, tmp_path, monkeypatch)  # no key in the environment: a clear error, not a 401 later

    calls = []

    def cluster_size(namespace: str = "team-a") -> int:
        """Number of nodes in the cluster serving a namespace."""
        calls.append(namespace)
        return 3

    forced = {"parallel_tool_calls": False, "temperature": 0, "max_tokens": 128}
    client = client_for(*secured, tmp_path, monkeypatch, key=KEY)
    assert client.model_info["function_calling"] is True

    create = client.create

    async def create_forced(messages, **kwargs):  # AssistantAgent asks with tool_choice "auto", and has no setting
        return await create(messages, **{**kwargs, "tool_choice": "required", "extra_create_args": forced})

    async def run():  # one event loop: the client's connections belong to it
        called = await client.create([UserMessage(content="How many nodes serve namespace team-a?", source="user")],
                                     tools=[FunctionTool(cluster_size, description=cluster_size.__doc__)],
                                     tool_choice="required", extra_create_args=forced)
        monkeypatch.setattr(client, "create", create_forced)
        agent = AssistantAgent("assistant", model_client=client, tools=[cluster_size])
        ran = await agent.run(task="How many nodes serve namespace team-a?")
        await client.close()
        return called, ran

    called, result = asyncio.run(run())
    assert called.finish_reason == "function_calls", called
    assert isinstance(called.content, list) and len(called.content) == 1, called
    assert isinstance(called.content[0], FunctionCall) and called.content[0].name == "cluster_size", called
    assert isinstance(json.loads(called.content[0].arguments), dict), called  # JSON arguments, an object
    assert called.usage.prompt_tokens > 0 and called.usage.completion_tokens > 0

    kinds = [type(m) for m in result.messages]
    request = next((m for m in result.messages if isinstance(m, ToolCallRequestEvent)), None)
    execution = next((m for m in result.messages if isinstance(m, ToolCallExecutionEvent)), None)
    assert request is not None and execution is not None, kinds
    assert [c.name for c in request.content] == ["cluster_size"], request
    assert request.models_usage.prompt_tokens > 0
    assert [(r.name, r.content, r.is_error) for r in execution.content] == [("cluster_size", "3", False)], execution
    assert len(calls) == 1  # the Python function ran, once, with the arguments the model gave
    final = result.messages[-1]
    assert isinstance(final, ToolCallSummaryMessage) and final.source == "assistant" and final.content == "3", final


def test_example_models_parse_with_vllms_own_parser():
    """Every example's rendered arguments go through vLLM's real parser: no flag vLLM would reject."""
    import yaml

    from modelplane_operator.config import Config
    from modelplane_operator.render import render_deployment

    argvs = {}
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Model":
                doc["metadata"].update(namespace="default", uid="u", generation=1)
                argvs[path.name] = render_deployment(doc, Config())["spec"]["template"]["spec"]["containers"][0]["args"]
    assert argvs
    out = subprocess.run([str(vllm_python()), str(REPO / "hack" / "vllm_parse.py")], input=json.dumps(argvs),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    parsed = json.loads(out.stdout.strip().splitlines()[-1])
    assert parsed["basic.yaml"]["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert parsed["tensor-parallel.yaml"]["tensor_parallel_size"] == 4
    assert parsed["tensor-parallel.yaml"]["enable_auto_tool_choice"] is True
    lora = parsed["lora.yaml"]
    assert (lora["enable_lora"], lora["max_lora_rank"], lora["max_loras"]) == (True, 16, 4), lora


def test_engine_args_schema_is_fresh_from_vllm():
    """operator/modelplane_operator/vllm_options.json is what the pinned vLLM's parser generates."""
    out = subprocess.run([str(vllm_python()), str(REPO / "hack" / "gen_vllm_options.py"), "-"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    committed = (REPO / "operator" / "modelplane_operator" / "vllm_options.json").read_text()
    assert out.stdout == committed, "stale: run `make vllm-options`"


def test_agent_resource_configuration_drives_a_real_call(secured, tmp_path, monkeypatch):
    """What the operator renders for an Agent (its ConfigMap files and env) is all an AutoGen workload needs."""
    from autogen_core.models import UserMessage

    from modelplane_agents import model_client

    model, base = secured
    for name, value in agent_pod_env([model], tmp_path / "etc-modelplane", {"tiny-key": {"api-key": KEY}}).items():
        monkeypatch.setenv(name, value)

    client = model_client(base_url=base + "/v1", max_tokens=8)  # the default model, as an agent would ask

    async def call():
        result = await client.create([UserMessage(content="Hello", source="user")])
        await client.close()
        return result

    assert asyncio.run(call()).usage.completion_tokens > 0
