"""A small AgentChat team: a writer and a reviewer take turns, on the model the operator injected.

    python agents/examples/round_robin.py [--model NAME] [--base-url URL] [--task TEXT] [--every SECONDS]

In a pod the configuration comes from the mounted folder (MODELPLANE_CONFIG_DIR); --base-url points the client
elsewhere, e.g. at http://127.0.0.1:8000/v1 after `kubectl port-forward svc/<model> 8000`. Run by a Deployment (an
Agent), it runs the team again every --every seconds instead of exiting, which the kubelet would take for a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import time

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
    ap.add_argument("--every", type=float, default=0, help="run again after this many seconds (0: run once, exit)")
    args = ap.parse_args()
    while True:
        try:
            asyncio.run(main(args.model, args.base_url, args.task, args.turns))
        except Exception as e:
            if not args.every:
                raise
            # a model not serving yet: say so and try again soon, rather than crash-loop
            print(f"the team could not finish ({type(e).__name__}: {e}); trying again in 30s", flush=True)
            time.sleep(min(args.every, 30))
            continue
        if not args.every:
            break
        time.sleep(args.every)
