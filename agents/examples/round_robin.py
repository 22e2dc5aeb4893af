"""A small AgentChat team: a writer and a reviewer take turns, on the model the operator injected.

    python agents/examples/round_robin.py [--model NAME] [--base-url URL] [--task TEXT]

In a pod the configuration comes from the mounted folder (MODELPLANE_CONFIG_DIR); --base-url points the client
elsewhere, e.g. at http://127.0.0.1:8000/v1 after `kubectl port-forward svc/<model> 8000`.
"""

from __future__ import annotations

import argparse
import asyncio

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_agentchat.ui import Console

from modelplane_agents import available_models, model_client


async def main(model: str | None, base_url: str | None, task: str, turns: int) -> None:
    print(f"models injected here: {', '.join(available_models())}")
    client = model_client(model, base_url=base_url, max_tokens=96)
    writer = AssistantAgent("writer", model_client=client, model_client_stream=True,
                            system_message="You write one short paragraph about the topic you are given.")
    reviewer = AssistantAgent("reviewer", model_client=client, model_client_stream=True,
                              system_message="You suggest one improvement to the writer's paragraph.")
    team = RoundRobinGroupChat([writer, reviewer], termination_condition=MaxMessageTermination(turns + 1))
    await Console(team.run_stream(task=task), output_stats=True)
    await client.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="Model name (default: the injected default model)")
    ap.add_argument("--base-url", help="override the in-cluster endpoint, e.g. after kubectl port-forward")
    ap.add_argument("--task", default="Why do agents need a model catalogue?")
    ap.add_argument("--turns", type=int, default=2)
    args = ap.parse_args()
    asyncio.run(main(args.model, args.base_url, args.task, args.turns))
