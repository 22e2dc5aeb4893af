"""The plain OpenAI SDK on the model the operator injected: no modelplane code at all.

    python agents/examples/openai_sdk.py [--task TEXT] [--every SECONDS]

`OpenAI()` takes OPENAI_BASE_URL and OPENAI_API_KEY from the injected env (a keyless Model's pods get a placeholder
key, which vLLM without --api-key accepts); the SDK reads no model variable, so requests name OPENAI_MODEL. Another
Model than the default: `modelplane_agents.openai_client(name)` and `model_settings(name).model`.
Run by a Deployment (an Agent), it asks again every --every seconds instead of exiting.
"""

from __future__ import annotations

import argparse
import os
import time

from openai import OpenAI


def main(task: str) -> None:
    client = OpenAI()
    model = os.environ["OPENAI_MODEL"]
    print(f"model {model} at {client.base_url}")
    stream = client.chat.completions.create(model=model, max_tokens=96, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": task}])
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        usage = chunk.usage or usage  # the last chunk's (modelplane's vLLM servers put it on every chunk)
    print(f"\nprompt tokens: {usage.prompt_tokens}, completion tokens: {usage.completion_tokens}", flush=True)
    client.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="Why do agents need a model catalogue?")
    ap.add_argument("--every", type=float, default=0, help="ask again after this many seconds (0: once, exit)")
    args = ap.parse_args()
    while True:
        try:
            main(args.task)
        except Exception as e:
            if not args.every:
                raise
            # a model not serving yet: say so and try again soon, rather than crash-loop
            print(f"no answer ({type(e).__name__}: {e}); trying again in 30s", flush=True)
            time.sleep(min(args.every, 30))
            continue
        if not args.every:
            break
        time.sleep(args.every)
