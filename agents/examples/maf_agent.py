"""A Microsoft Agent Framework agent on the model the operator injected, its answer streamed.

    python agents/examples/maf_agent.py [--model NAME] [--base-url URL] [--task TEXT] [--every SECONDS]

The client comes from modelplane_agents.agent_framework_client (an OpenAIChatCompletionClient: Chat Completions,
which vLLM serves). The agent gets a tool only when the Model serves tool_choice "auto" (the injected index says so;
see `model_settings`), since an Agent with tools asks for "auto" and vLLM refuses it otherwise. Without the library,
`OpenAIChatCompletionClient()` with no arguments reaches the default Model from the injected env alone.
Run by a Deployment (an Agent), it answers again every --every seconds instead of exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from agent_framework import Agent

from modelplane_agents import agent_framework_client, available_models, model_settings


def cluster_time() -> str:
    """The time of day in the cluster, UTC."""
    return time.strftime("%H:%M UTC", time.gmtime())


async def main(model: str | None, base_url: str | None, task: str) -> None:
    print(f"models injected here: {', '.join(available_models())}")
    settings = model_settings(model, base_url=base_url)
    tools = [cluster_time] if settings.auto_tool_choice else []
    print(f"model {settings.namespace}/{settings.name} ({settings.model}); tools: "
          f"{', '.join(t.__name__ for t in tools) or 'none (the Model does not serve tool_choice auto)'}")
    agent = Agent(client=agent_framework_client(model, base_url=base_url), name="assistant", tools=tools,
                  instructions="You answer in two sentences.", default_options={"max_tokens": 96})
    stream = agent.run(task, stream=True)
    async for update in stream:
        print(update.text, end="", flush=True)
    usage = (await stream.get_final_response()).usage_details or {}
    print(f"\nprompt tokens: {usage.get('input_token_count')}, completion tokens: {usage.get('output_token_count')}",
          flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="Model name (default: the injected default model)")
    ap.add_argument("--base-url", help="override the in-cluster endpoint, e.g. after kubectl port-forward")
    ap.add_argument("--task", default="Why do agents need a model catalogue?")
    ap.add_argument("--every", type=float, default=0, help="answer again after this many seconds (0: once, exit)")
    args = ap.parse_args()
    while True:
        try:
            asyncio.run(main(args.model, args.base_url, args.task))
        except Exception as e:
            if not args.every:
                raise
            # a model not serving yet: say so and try again soon, rather than crash-loop
            print(f"the agent could not answer ({type(e).__name__}: {e}); trying again in 30s", flush=True)
            time.sleep(min(args.every, 30))
            continue
        if not args.every:
            break
        time.sleep(args.every)
