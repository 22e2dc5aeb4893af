"""Microsoft Agent Framework and the plain OpenAI SDK against the real vLLM server, configured only by what the
operator injects into an Agent's pod (its env, its mounted ConfigMap). The servers are the ones test_vllm_autogen.py
uses (tests/e2e/conftest.py): `plain` (keyless, no tool calling) and `secured` (keyed, hermes auto tool choice)."""

from __future__ import annotations

import asyncio
import os
import warnings

import pytest

from localvllm import TEST_API_KEY, agent_pod_env

SECRETS = {"tiny-key": {"api-key": TEST_API_KEY}}


@pytest.fixture
def pod(tmp_path, monkeypatch):
    """pod(server): this test process becomes an Agent's pod on that server's Model: nothing from the host's
    OPENAI_*/AZURE_* env, only the injected env, with OPENAI_BASE_URL at the local server (a port-forward). The
    mounted index still has the in-cluster endpoint, so the library's clients get base_url=OPENAI_BASE_URL here,
    as after `kubectl port-forward`."""
    def enter(server):
        model, base = server
        for var in list(os.environ):
            if var.startswith(("OPENAI_", "AZURE_OPENAI_", "MODELPLANE_")):
                monkeypatch.delenv(var)
        env = agent_pod_env([model], tmp_path / "etc-modelplane", SECRETS, base_url=base + "/v1")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return env
    return enter


def tokens(usage) -> tuple[int, int]:
    return (usage or {}).get("input_token_count") or 0, (usage or {}).get("output_token_count") or 0


@pytest.mark.parametrize("server", ["plain", "secured"])
def test_openai_sdk_with_no_arguments_answers_from_the_injected_env(pod, request, server):
    """`OpenAI()`: base URL and key from OPENAI_BASE_URL / OPENAI_API_KEY (a keyless Model's placeholder, or the
    Secret's key); the SDK reads no model variable, so the request names OPENAI_MODEL."""
    from openai import OpenAI

    env = pod(request.getfixturevalue(server))
    assert env["OPENAI_API_KEY"] == ("no-key" if server == "plain" else TEST_API_KEY)
    client = OpenAI()
    result = client.chat.completions.create(model=os.environ["OPENAI_MODEL"], max_tokens=8,
                                            messages=[{"role": "user", "content": "Say hello."}])
    assert isinstance(result.choices[0].message.content, str)
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    client.close()


def test_agent_framework_agent_streams_with_usage_counted(pod, plain):
    """`OpenAIChatCompletionClient()` with no arguments (OPENAI_MODEL, OPENAI_BASE_URL, and the keyless Model's
    placeholder OPENAI_API_KEY keeping it off Azure routing), and the library's client for the same Model: an Agent
    answers, streamed, and the stream's usage (stream_options include_usage) is counted. The random-weights model
    may end after one token, so vLLM's min_tokens (passed through as extra_body) keeps it going. How many pieces
    the text comes in is vLLM's affair, not the client's configuration: its API server merges token deltas when
    the engine gets ahead of it (v1 RequestOutputCollector), so on a loaded machine all of it may come as one
    (seen in CI). Asserted instead: the answer came as a stream of updates, the text ones add up to the final
    answer, and usage is counted."""
    from agent_framework import Agent
    from agent_framework.openai import OpenAIChatCompletionClient

    from modelplane_agents import agent_framework_client

    pod(plain)

    async def run(client):
        agent = Agent(client=client, name="assistant", instructions="Answer in one sentence.",
                      default_options={"max_tokens": 16, "extra_body": {"min_tokens": 4}})
        stream = agent.run("What is a Kubernetes operator?", stream=True)
        updates = [u async for u in stream]
        final = await stream.get_final_response()
        single = await agent.run("Say hello.")  # and not streamed
        return updates, final, single

    for client in (OpenAIChatCompletionClient(), agent_framework_client(base_url=os.environ["OPENAI_BASE_URL"])):
        assert client.model == "tiny"
        updates, final, single = asyncio.run(run(client))
        assert len(updates) > 1, updates  # a stream: text and usage come in separate updates
        assert final.text and final.text == "".join(u.text for u in updates if u.text), (final.text, updates)
        assert all(n > 0 for n in tokens(final.usage_details)), final.usage_details
        assert isinstance(single.text, str) and all(n > 0 for n in tokens(single.usage_details)), single


def test_agent_framework_agent_runs_a_tool(pod, secured):
    """On the tool-calling Model (hermes), an Agent runs its tool: the tiny random-weights model never chooses one
    by itself, so the first call is forced (tool_choice "required", one call, greedy: its arguments come out as an
    empty object, so the tool takes no required argument). Agent Framework then asks again with the tool's result
    and no tool_choice, which vLLM serves as "auto" here. No warning: this Model serves both."""
    from agent_framework import Agent

    from modelplane_agents import ToolChoiceUnsupported, agent_framework_client

    pod(secured)
    calls = []

    def cluster_size(namespace: str = "team-a") -> int:
        """Number of nodes in the cluster serving a namespace."""
        calls.append(namespace)
        return 3

    async def run():
        agent = Agent(client=agent_framework_client(base_url=os.environ["OPENAI_BASE_URL"]), name="assistant",
                      tools=[cluster_size],
                      default_options={"tool_choice": "required", "allow_multiple_tool_calls": False,
                                       "temperature": 0, "max_tokens": 128})
        return await agent.run("How many nodes serve namespace team-a?")

    with warnings.catch_warnings():
        warnings.simplefilter("error", ToolChoiceUnsupported)
        response = asyncio.run(run())
    contents = [c for m in response.messages for c in m.contents]
    asked = [c for c in contents if c.type == "function_call"]
    results = [c for c in contents if c.type == "function_result"]
    assert [c.name for c in asked] == ["cluster_size"], [c.type for c in contents]
    assert calls == ["team-a"]  # the Python function ran, once, with the arguments the model gave
    assert [(r.call_id, str(r.result)) for r in results] == [(asked[0].call_id, "3")], results
    assert all(n > 0 for n in tokens(response.usage_details)), response.usage_details


def test_tools_on_a_model_without_auto_tool_choice_warn_before_vllm_refuses(pod, plain):
    """The `plain` Model has no tool calling: the library warns, naming the Model and the engineArgs, before the
    request goes out; vLLM then refuses tool_choice "auto" (400), as the warning said it would."""
    from agent_framework import Agent

    from modelplane_agents import ToolChoiceUnsupported, agent_framework_client, openai_client

    pod(plain)

    def cluster_size() -> int:
        """Number of nodes."""
        return 3

    async def run():
        client = agent_framework_client(base_url=os.environ["OPENAI_BASE_URL"])
        return await Agent(client=client, tools=[cluster_size]).run("How many nodes?")

    with pytest.warns(ToolChoiceUnsupported, match=r"model agents/tiny cannot serve tools .*enableAutoToolChoice"):
        with pytest.raises(Exception, match="auto.* tool choice requires --enable-auto-tool-choice"):
            asyncio.run(run())

    tools = [{"type": "function", "function": {"name": "cluster_size", "parameters": {"type": "object"}}}]
    client = openai_client(base_url=os.environ["OPENAI_BASE_URL"], max_retries=0)
    with pytest.warns(ToolChoiceUnsupported, match="agents/tiny"):
        with pytest.raises(Exception, match="auto.* tool choice requires"):
            client.chat.completions.create(model=os.environ["OPENAI_MODEL"], tools=tools,
                                           messages=[{"role": "user", "content": "How many nodes?"}])
    # tool_choice "none" (or no tools) is served: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ToolChoiceUnsupported)
        result = client.chat.completions.create(model=os.environ["OPENAI_MODEL"], tools=tools, tool_choice="none",
                                                max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert result.usage.completion_tokens > 0
    client.close()


@pytest.mark.parametrize("script", ["maf_agent.py", "openai_sdk.py"])
def test_example_programs_answer(pod, plain, script):
    """agents/examples' Agent Framework and OpenAI SDK programs (examples/maf-agent.yaml, openai-agent.yaml), run as
    an Agent's pod runs them, with only the injected configuration."""
    import subprocess
    import sys

    from localvllm import REPO

    env = pod(plain)
    args = ["--base-url", env["OPENAI_BASE_URL"]] if script == "maf_agent.py" else []  # the SDK reads the env alone
    out = subprocess.run([sys.executable, str(REPO / "agents" / "examples" / script), "--task", "Say hello.", *args],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert out.stdout.count("completion tokens:") == 1 and "completion tokens: 0" not in out.stdout, out.stdout
    if script == "maf_agent.py":
        assert "tools: none (the Model does not serve tool_choice auto)" in out.stdout, out.stdout
